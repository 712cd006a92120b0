"""The queue as the operator console shows it: read-only views on a psycopg2 connection.

Each function takes an open connection (the console's read connection,
``CONVDB_READ_URL`` or the primary) and runs statements of
:mod:`convdb.queue.queries`; none writes. They stay fast whatever the number
of ``done`` rows: done rows are never counted (their number is estimated
from the planner's statistics), and the last hour is read through
``inbound_events_processed_at_idx`` (migration 052).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field

from . import queries
from .limits import Limits

#: The chart's span and resolution.
WINDOW_MINUTES = 60
#: A worker is "seen" when it finished an event within the window or holds one now.
LIVE_STATUSES = ("pending", "processing", "dead")


@dataclass
class Counts:
    """Exact counts of pending, processing and dead events by type; done estimated."""

    by_type: dict[str, dict[str, int]] = field(default_factory=dict)
    done_estimate: int | None = None

    def total(self, status: str) -> int:
        return sum(row.get(status, 0) for row in self.by_type.values())


@dataclass(frozen=True)
class Head:
    id: int
    event_type: str
    received_at: dt.datetime
    available_at: dt.datetime
    attempts: int
    age_seconds: float


@dataclass(frozen=True)
class Worker:
    name: str
    finished: int  # events done or dead within the window
    last_seen: dt.datetime | None
    holding: int  # events it holds now


@dataclass
class Throughput:
    """Per-minute series over the window, oldest minute first."""

    minutes: list[dt.datetime]
    received: list[int]
    done: list[int]
    dead: list[int]
    workers: list[Worker]


@dataclass(frozen=True)
class DeadRow:
    id: int
    event_type: str
    received_at: dt.datetime
    processed_at: dt.datetime | None
    attempts: int
    error: str | None


@dataclass(frozen=True)
class Event:
    id: int
    event_type: str
    status: str
    received_at: dt.datetime
    available_at: dt.datetime
    processed_at: dt.datetime | None
    attempts: int
    last_error: str | None
    locked_by: str | None
    idempotency_key: str | None
    payload_bytes: int | None
    payload_text: str | None  # None when over the size limit shown


def counts(conn) -> Counts:
    with conn.cursor() as cur:
        cur.execute(queries.LIVE_COUNTS)
        rows = cur.fetchall()
        cur.execute(queries.TABLE_ESTIMATE)
        estimate = (cur.fetchone() or (None,))[0]
    result = Counts()
    for event_type, status, n in rows:
        result.by_type.setdefault(event_type, {})[status] = n
    if estimate is not None:
        live = sum(result.total(s) for s in LIVE_STATUSES)
        result.done_estimate = max(int(estimate) - live, 0)
    result.by_type = dict(sorted(result.by_type.items()))
    return result


def head(conn) -> Head | None:
    with conn.cursor() as cur:
        cur.execute(queries.HEAD)
        row = cur.fetchone()
    return Head(*row) if row else None


#: Minutes before the current one that are read again at every view: an event
#: committed late (its transaction began in an earlier minute) still lands in them.
SETTLE_MINUTES = 2


@dataclass(frozen=True)
class _Minute:
    received: int
    finished: list[tuple[str, int, int, dt.datetime]]  # (worker, done, dead, last)


class MinuteCache:
    """The chart's settled minutes, kept between views of the queue page.

    A minute more than :data:`SETTLE_MINUTES` old does not change any more
    (its events were received or finished then), so a view reads only the
    minutes since then and those it has not seen: a few hundred rows where
    the whole hour is tens of thousands on a busy day. A dead event retried
    later still counts as dead in the minute it went dead, which is what
    happened then. Not thread-safe: one per reader thread.
    """

    def __init__(self) -> None:
        self.minutes: dict[dt.datetime, _Minute] = {}


def throughput(conn, minutes: int = WINDOW_MINUTES, cache: MinuteCache | None = None) -> Throughput:
    """Received, done and dead per minute over the last ``minutes``, and the workers seen."""
    cache = cache or MinuteCache()
    with conn.cursor() as cur:
        cur.execute("SELECT date_trunc('minute', now())")
        (now_minute,) = cur.fetchone()
        since = now_minute - dt.timedelta(minutes=minutes - 1)
        settled = now_minute - dt.timedelta(minutes=SETTLE_MINUTES)
        axis = [since + dt.timedelta(minutes=i) for i in range(minutes)]
        for old in [m for m in cache.minutes if m < since]:
            del cache.minutes[old]
        missing = [m for m in axis if m < settled and m not in cache.minutes]
        read_from = missing[0] if missing else settled
        cur.execute(queries.FINISHED_BY_MINUTE, {"since": read_from})
        finished = cur.fetchall()
        cur.execute(queries.RECEIVED_BY_MINUTE, {"since": read_from})
        received = dict(cur.fetchall())
        cur.execute(queries.HOLDING)
        holding = {name: (n, until) for name, n, until in cur.fetchall()}
    fresh: dict[dt.datetime, list] = defaultdict(list)
    for minute, worker, n_done, n_dead, last in finished:
        fresh[minute].append((worker, n_done, n_dead, last))
    for minute in axis:
        if read_from <= minute < settled:
            cache.minutes[minute] = _Minute(received.get(minute, 0), fresh.get(minute, []))
    done: dict = defaultdict(int)
    dead: dict = defaultdict(int)
    seen: dict[str, list] = {}
    for minute in axis:
        kept = cache.minutes.get(minute) if minute < settled else None
        if kept is None:
            kept = _Minute(received.get(minute, 0), fresh.get(minute, []))
        received[minute] = kept.received
        for worker, n_done, n_dead, last in kept.finished:
            done[minute] += n_done
            dead[minute] += n_dead
            entry = seen.setdefault(worker, [0, None])
            entry[0] += n_done + n_dead
            entry[1] = last if entry[1] is None else max(entry[1], last)
    workers = [
        Worker(name, total, last, holding.get(name, (0, None))[0])
        for name, (total, last) in seen.items()
    ]
    workers += [Worker(name, 0, None, n) for name, (n, _) in holding.items() if name not in seen]
    workers.sort(key=lambda w: (w.last_seen is None, -(w.last_seen or axis[0]).timestamp(), w.name))
    return Throughput(
        minutes=axis,
        received=[received.get(m, 0) for m in axis],
        done=[done[m] for m in axis],
        dead=[dead[m] for m in axis],
        workers=workers,
    )


def dead_page(
    conn, *, event_type: str | None = None, before: int | None = None, limit: int = 50
) -> list[DeadRow]:
    """Dead events newest first, ``limit`` of them with ids below ``before``."""
    params = {"event_type": event_type, "before": before, "limit": limit}
    with conn.cursor() as cur:
        cur.execute(queries.DEAD_PAGE, params)
        return [DeadRow(*row) for row in cur.fetchall()]


def dead_summary(
    conn, *, event_type: str | None = None, max_id: int | None = None
) -> tuple[int, int | None]:
    """How many dead events the selection holds now, and its newest id."""
    with conn.cursor() as cur:
        cur.execute(queries.DEAD_SUMMARY, {"event_type": event_type, "max_id": max_id})
        count, newest = cur.fetchone()
    return count, newest


def event(conn, event_id: int, *, max_bytes: int = Limits.payload_bytes) -> Event | None:
    """One event by id, any status; its payload as JSON text up to ``max_bytes``."""
    with conn.cursor() as cur:
        cur.execute(queries.EVENT, {"id": event_id, "max_bytes": max_bytes})
        row = cur.fetchone()
    return Event(*row) if row else None


__all__ = [
    "Counts",
    "DeadRow",
    "Event",
    "Head",
    "MinuteCache",
    "Throughput",
    "Worker",
    "counts",
    "dead_page",
    "dead_summary",
    "event",
    "head",
    "throughput",
]
