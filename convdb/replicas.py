"""The replicas of ``CONVDB_READ_URL``: how far behind each is, and waiting until they caught up.

A streaming standby replays the primary's WAL a little later than the
primary commits it: what a read there returns may miss the last moments of
writes (its replay lag). convdb therefore reads there only for work that
decides no write (:func:`convdb.db.connect_read`), and:

- :func:`check_replicas` visits every host of the read URL, one by one, and
  says whether it is a standby, and its lag (``/healthz`` reports a lag over
  ``CONVDB_READ_MAX_LAG`` as ``degraded``, :class:`ReplicaMonitor` keeps the
  answer for a few seconds);
- :func:`wait_for_replay` waits until every host has replayed a position of
  the primary's WAL (:func:`current_lsn`, read after a commit), or reports
  which did not within its timeout: an erasure says "done" only then, so
  erased messages are not found on a replica afterwards;
- :func:`note_primary` says once when a read URL reached a primary (it works;
  it just takes no load off the primary).

Lag is measured on the standby as ``now() - pg_last_xact_replay_timestamp()``
while it has received WAL it has not replayed yet, and 0 once it replayed
all it received (an idle primary sends nothing, so an old replay timestamp
alone means nothing). A standby that lost its primary keeps answering with
what it has: its lag then grows only from the moment it receives again.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg2

from .config import Settings, load_settings
from .dburl import Host, hosts, mask_url, redact
from .pgconnect import ConnectOptions, connect_params

log = logging.getLogger("convdb.replicas")

# On a standby: replayed what it received? Else the age of the last replayed commit.
LAG = """
SELECT pg_is_in_recovery(),
       CASE WHEN NOT pg_is_in_recovery() THEN NULL
            WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0
            ELSE greatest(0, extract(epoch FROM now() - pg_last_xact_replay_timestamp()))
       END::float8
"""
# Has this host got the primary's WAL up to %s? (A primary: its own position.)
REPLAYED = """
SELECT pg_is_in_recovery(),
       CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() >= %(lsn)s::pg_lsn
            ELSE pg_current_wal_lsn() >= %(lsn)s::pg_lsn END
"""
CURRENT_LSN = "SELECT pg_current_wal_insert_lsn()::text"

_noted: set[str] = set()
_noted_lock = threading.Lock()


@dataclass(frozen=True)
class ReplicaState:
    """One host of the read URL as last seen."""

    host: str  # host:port, for people
    role: str  # "standby", "primary" or "unreachable"
    lag: float | None = None  # seconds behind (standby only)
    error: str | None = None

    def as_json(self) -> dict:
        found = {"host": self.host, "role": self.role}
        if self.lag is not None:
            found["lag_seconds"] = round(self.lag, 3)
        if self.error:
            found["error"] = self.error
        return found


@dataclass
class ReplayReport:
    """What :func:`wait_for_replay` found, host by host."""

    lsn: str
    timeout: float
    replayed: list[str] = field(default_factory=list)  # hosts that have it
    missing: dict[str, str] = field(default_factory=dict)  # host -> why not (timeout, error)
    seconds: float = 0.0

    @property
    def done(self) -> bool:
        return not self.missing

    def summary(self) -> str:
        """One line for the operator."""
        if not self.replayed and not self.missing:
            return "no replica configured (CONVDB_READ_URL unset)"
        if self.done:
            return f"replayed on every replica ({', '.join(self.replayed)}) in {self.seconds:.1f} s"
        late = "; ".join(f"{host}: {why}" for host, why in self.missing.items())
        return (
            f"NOT replayed within {self.timeout:g} s on {late}; what was changed may still "
            "be read there until it catches up"
        )


def _connect(url: str, host: Host, options: ConnectOptions | None):
    params = {**connect_params(url, "read", options), **host.params}
    params["target_session_attrs"] = "any"
    conn = psycopg2.connect(url, application_name="convdb replicas", **params)
    conn.autocommit = True
    return conn


def _error(url: str, exc: BaseException) -> str:
    return redact(" ".join(str(exc).split()), url)[:300] or type(exc).__name__


def check_replicas(
    url: str | None = None, *, settings: Settings | None = None
) -> list[ReplicaState]:
    """Every host of ``url`` (default ``CONVDB_READ_URL``; none when unset), as it is now."""
    if url is None:
        settings = settings or load_settings()
        url = settings.read_url
    if url is None:
        return []
    options = ConnectOptions.from_settings(settings) if settings else None
    states = []
    for host in hosts(url):
        try:
            conn = _connect(url, host, options)
        except psycopg2.Error as exc:
            states.append(ReplicaState(host.label, "unreachable", error=_error(url, exc)))
            continue
        try:
            with conn.cursor() as cur:
                cur.execute(LAG)
                standby, lag = cur.fetchone()
            states.append(ReplicaState(host.label, "standby" if standby else "primary", lag))
        except psycopg2.Error as exc:
            states.append(ReplicaState(host.label, "unreachable", error=_error(url, exc)))
        finally:
            conn.close()
    return states


def current_lsn(db) -> str:
    """The primary's WAL position now (after a commit: one that covers it); a peewee
    database or a psycopg2 connection."""
    if hasattr(db, "execute_sql"):
        return db.execute_sql(CURRENT_LSN).fetchone()[0]
    with db.cursor() as cur:
        cur.execute(CURRENT_LSN)
        return cur.fetchone()[0]


def wait_for_replay(
    lsn: str,
    timeout: float | None = None,
    *,
    url: str | None = None,
    settings: Settings | None = None,
    poll: float = 0.1,
) -> ReplayReport:
    """Wait until every host of ``url`` (default ``CONVDB_READ_URL``) has replayed ``lsn``.

    ``timeout`` (default ``CONVDB_REPLAY_TIMEOUT``) bounds the whole wait,
    not each host. Never raises for a host that is late or unreachable: the
    report lists it with why (``report.done`` is False), so the caller can
    say so. With no read URL configured there is nothing to wait for.
    """
    settings = settings or load_settings()
    url = url if url is not None else settings.read_url
    timeout = settings.replay_timeout if timeout is None else timeout
    report = ReplayReport(lsn, timeout)
    if url is None:
        return report
    options = ConnectOptions.from_settings(settings)
    started = time.monotonic()
    deadline = started + timeout
    for host in hosts(url):
        why = _wait_one(url, host, lsn, deadline, poll, options)
        if why is None:
            report.replayed.append(host.label)
        else:
            report.missing[host.label] = why
    report.seconds = time.monotonic() - started
    if report.missing:
        log.warning("replicas: %s", report.summary())
    return report


def _wait_one(url, host, lsn, deadline, poll, options) -> str | None:
    """None once ``host`` has ``lsn``; else why not, at the deadline."""
    last = "no answer"
    conn = None
    try:
        while True:
            try:
                if conn is None:
                    conn = _connect(url, host, options)
                with conn.cursor() as cur:
                    cur.execute(REPLAYED, {"lsn": lsn})
                    standby, replayed = cur.fetchone()
                if replayed:
                    return None
                last = "replay behind" if standby else "a primary behind that position"
            except psycopg2.Error as exc:
                last = f"unreachable ({_error(url, exc)})"
                if conn is not None:
                    with contextlib.suppress(psycopg2.Error):
                        conn.close()
                conn = None
            if time.monotonic() + poll > deadline:
                return f"timed out: {last}"
            time.sleep(poll)
    finally:
        if conn is not None:
            conn.close()


def note_primary(db, note: Callable[[str], None] | None = None) -> bool:
    """Say once per process and URL when a read connection landed on a primary; did it?"""
    standby = db.execute_sql("SELECT pg_is_in_recovery()").fetchone()[0]
    if standby:
        return False
    with _noted_lock:
        if db.url in _noted:
            return True
        _noted.add(db.url)
    message = (
        f"convdb: note: CONVDB_READ_URL ({mask_url(db.url)}) reached a primary, not a "
        "standby; reads go to the primary (correct, but no load is taken off it)"
    )
    if note is None:
        print(message, file=sys.stderr)
    else:
        note(message)
    return True


class ReplicaMonitor:
    """:func:`check_replicas`, kept ``ttl`` seconds (``/healthz`` asks it often)."""

    def __init__(self, url: str | None, max_lag: float, *, ttl: float = 5.0) -> None:
        self.url = url
        self.max_lag = max_lag
        self.ttl = ttl
        self._states: list[ReplicaState] = []
        self._at = float("-inf")
        self._lock = threading.Lock()

    def states(self) -> list[ReplicaState]:
        """The replicas as last seen; checked again first when that is over ``ttl`` s ago.

        Never waits for a check another thread is making (a replica that does
        not answer must not pile up callers): it gets the previous answer.
        """
        if self.url is None:
            return []
        if time.monotonic() - self._at > self.ttl and self._lock.acquire(blocking=False):
            try:
                self._states = check_replicas(self.url)
                self._at = time.monotonic()
            finally:
                self._lock.release()
        return list(self._states)

    def degraded(self, states: list[ReplicaState]) -> list[str]:
        """Why the read side is degraded, one line per replica; empty when it is not."""
        reasons = []
        for state in states:
            if state.role == "unreachable":
                reasons.append(f"{state.host} unreachable")
            elif state.lag is not None and state.lag > self.max_lag:
                reasons.append(f"{state.host} lags {state.lag:.1f} s (over {self.max_lag:g} s)")
        return reasons


__all__ = [
    "ReplayReport",
    "ReplicaMonitor",
    "ReplicaState",
    "check_replicas",
    "current_lsn",
    "note_primary",
    "wait_for_replay",
]
