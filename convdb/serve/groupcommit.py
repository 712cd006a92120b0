"""Group commit: concurrent webhooks share one INSERT and one commit, each answered after it.

One :class:`GroupWriter` per server process owns one connection and one
thread. Requests hand it their row (:meth:`GroupWriter.store`) and wait.
The thread takes everything queued (up to ``max_group`` rows), stores it in
one statement (:data:`convdb.queue.queries.INSERT_EVENTS`) and commits, with ``synchronous_commit``
on; only then does it resolve each request's future with ``"stored"`` or
``"duplicate"``. While one group commits, the next one queues up, so the
group size follows the load by itself: one row at low load (no added wait),
hundreds under a burst (one WAL flush for all of them). A request that
carries a batch of events (SendGrid's event webhook) hands over all its rows
at once (:meth:`GroupWriter.store_many`): they always share one group, so
one transaction, whatever ``max_group``.

Failures stay with their request:

- a row comes accepted (:mod:`convdb.queue.acceptance`: the receiver hands
  the JSON text the acceptance made); given none, the writer holds the
  event to the queue's limits (size, depth, key, event type, what ``jsonb``
  cannot hold) itself: 413 over ``CONVDB_MAX_PAYLOAD_BYTES``, else 400;
- a group the database refuses is retried row by row, each in its own
  transaction, so one bad row (an endpoint deleted meanwhile) costs its
  neighbours nothing and gets its own 400;
- a lost connection is reopened and the group retried once: rows committed
  before the loss come back as duplicates, which the idempotency key makes
  exact; when the database stays away, every waiting request gets
  :class:`~convdb.serve.pg.Unavailable` (503 with ``Retry-After``) and the
  writer tries to reconnect at most once per ``retry_interval``;
- a commit the database does not answer within ``statement_timeout`` (plus
  :data:`~convdb.serve.pg.WATCHDOG_SLACK`) is cancelled and its connection
  dropped by the watchdog (:mod:`convdb.watchdog`); it then counts as lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import psycopg2

from ..exceptions import PayloadError, QueueError
from ..pgerrors import is_connection_error, sqlstate
from ..queue.acceptance import Acceptance
from ..queue.limits import configured as limits_configured
from ..queue.queries import CHANNEL, INSERT_EVENTS
from ..sqlarray import Array
from ..watchdog import Watchdog
from .adapters import Delivery, Rejection
from .deliveries import COUNT_DELIVERIES, PURGE_DELIVERIES
from .pg import WATCHDOG_SLACK, Unavailable, close_quietly, open_connection
from .rejection import refused
from .replay import PURGE_NONCES, endpoint_scope, spent_elsewhere
from .request import off_loop

log = logging.getLogger("convdb.serve")

# Rows go to INSERT_EVENTS (convdb.queue.queries, the one INSERT of events and
# its NOTIFY) in key order, so two receivers storing overlapping keys lock them
# in the same order (no deadlock between groups). ON CONFLICT skips a key that
# is already stored, or repeated earlier in the same group; what it returns
# says which keys this statement stored.

PURGE_INTERVAL = 60.0
# SQLSTATE classes of a value the database will never accept: data
# exceptions (22: a \u0000 in jsonb), integrity (23), program limits (54).
_REFUSED_CLASSES = ("22", "23", "54")
_STOP = object()


@dataclass(eq=False)
class Pending:
    """One row waiting for the writer, and how to tell its request the result."""

    endpoint_id: int
    event_type: str
    payload: str
    key: str
    nonce: str | None
    nonce_ttl: float
    done: Callable[[object], None]
    scope: str = ""  # the nonce's scope (convdb.serve.replay)


class GroupWriter:
    """The process's one writer thread and connection; see the module docstring."""

    def __init__(
        self,
        url: str,
        *,
        max_group: int = 1000,
        statement_timeout: float = 10.0,
        retry_interval: float = 1.0,
        on_group: Callable[[int, float], None] | None = None,
    ) -> None:
        self._url = url
        self._max_group = max_group
        self._statement_timeout = statement_timeout
        self._retry_interval = retry_interval
        self._on_group = on_group
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._conn = None
        self._next_attempt = 0.0
        self._down: Unavailable | None = None
        self._in_flight = 0
        self._closing = False
        self._thread: threading.Thread | None = None
        self._last_purge = time.monotonic()
        self._watchdog = Watchdog("convdb serve writer", url, on_abort=log.warning)

    # --- the requests' side (event loop thread) ---------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="convdb-serve-writer", daemon=True
            )
            self._thread.start()

    @property
    def depth(self) -> int:
        """Rows queued or being written now."""
        return self._queue.qsize() + self._in_flight

    async def store(
        self,
        endpoint_id: int,
        key: str,
        delivery: Delivery,
        *,
        timeout: float,
        nonce_scope: str | None = None,
        size: int | None = 0,
        text: str | None = None,
    ) -> str:
        """``"stored"`` or ``"duplicate"`` once committed; raises :class:`Unavailable`
        (database away, timeout, shutting down) or a :class:`Rejection` (the row was
        refused by the database, or its nonce was used by another delivery in
        ``nonce_scope``: :mod:`convdb.serve.replay`, default the endpoint's).

        ``text`` is the payload's JSON text as the acceptance made it; without
        it the payload is held to the queue's limits here. ``size`` is about
        how large the payload is (the request's body; None: unknown): a large
        one is encoded and checked off the event loop."""
        payload = text
        if payload is None:
            payload = await off_loop(size, _limited, delivery.event_type, delivery.payload, key)
        loop = asyncio.get_running_loop()
        future = loop.create_future()

        def done(result: object) -> None:
            loop.call_soon_threadsafe(_settle, future, result)

        self._submit(
            Pending(
                endpoint_id,
                delivery.event_type,
                payload,
                key,
                delivery.nonce,
                float(delivery.nonce_ttl),
                done,
                nonce_scope or endpoint_scope(endpoint_id),
            )
        )
        try:
            result = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise Unavailable(f"the database did not commit within {timeout:g} s") from None
        if isinstance(result, BaseException):
            raise result
        return result

    async def store_many(
        self,
        endpoint_id: int,
        items: Sequence[tuple[str, Delivery]],
        *,
        timeout: float,
        size: int | None = 0,
        accept: Callable[[Delivery, str], str] | None = None,
    ) -> list[object]:
        """Each (key, delivery)'s result, all in one group (one transaction): ``"stored"``,
        ``"duplicate"``, or the :class:`Rejection` of a row refused alone (by
        ``accept(delivery, key)``, which gives the stored text or raises a
        :class:`Rejection`: the receiver's acceptance; default the queue's limits
        alone; or by the database). Raises :class:`Unavailable` when any row could
        not be written for a cause that is not its own."""

        def texts() -> list[object]:
            out: list[object] = []
            for key, delivery in items:
                try:
                    if accept is not None:
                        out.append(accept(delivery, key))
                    else:
                        out.append(_limited(delivery.event_type, delivery.payload, key))
                except Rejection as rejection:
                    out.append(rejection)
            return out

        payloads = await off_loop(size, texts)
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future | None] = []
        rows: list[Pending] = []
        for (key, delivery), payload in zip(items, payloads, strict=True):
            if isinstance(payload, Rejection):
                futures.append(None)
                continue
            future = loop.create_future()
            futures.append(future)
            rows.append(
                Pending(
                    endpoint_id,
                    delivery.event_type,
                    payload,
                    key,
                    None,
                    float(delivery.nonce_ttl),
                    functools.partial(_settle_threadsafe, loop, future),
                    endpoint_scope(endpoint_id),
                )
            )
        if rows:
            self._submit(rows)
            try:
                done = [f for f in futures if f is not None]
                await asyncio.wait_for(asyncio.gather(*done), timeout)
            except TimeoutError:
                raise Unavailable(f"the database did not commit within {timeout:g} s") from None
        results = [p if f is None else f.result() for f, p in zip(futures, payloads, strict=True)]
        for result in results:
            if isinstance(result, Unavailable):
                raise result
        return results

    def _submit(self, item: Pending | list[Pending]) -> None:
        if self._closing:
            for row in _rows(item):
                row.done(Unavailable("the server is shutting down"))
            return
        self.start()
        self._queue.put(item)

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, then stop the thread and close the connection.

        A database that does not answer delays this by at most ``timeout`` s
        (and says so in the log): its calls are then aborted.
        """
        self._closing = True
        if self._thread is not None:
            self._queue.put(_STOP)
            if not self._watchdog.join(self._thread, timeout, log.warning):
                return  # its connection is the stuck thread's: closing it would block too
        close_quietly(self._conn)
        self._conn = None

    def _guard(self, conn, what: str):
        return self._watchdog.guard(conn, self._statement_timeout + WATCHDOG_SLACK, what)

    # --- the writer thread ----------------------------------------------------------

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                break
            # A list is one request's batch: its rows always share a group.
            group, stop = _rows(first), False
            while len(group) < self._max_group:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                group.extend(_rows(item))
            self._in_flight = len(group)
            try:
                self._write(group)
            except Exception as exc:  # a bug must not kill the thread and hang requests
                log.exception("group commit failed unexpectedly")
                for item in group:
                    item.done(Unavailable(f"the writer failed: {type(exc).__name__}"))
            self._in_flight = 0
            if stop:
                break
            if time.monotonic() - self._last_purge > PURGE_INTERVAL:
                self._purge_expired()
        leftover = Unavailable("the server is shutting down")
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                for row in _rows(item):
                    row.done(leftover)

    def _connection(self):
        if self._conn is not None:
            return self._conn
        if time.monotonic() < self._next_attempt:
            return None
        try:
            self._conn = open_connection(
                self._url, name="convdb serve", statement_timeout=self._statement_timeout
            )
        except Unavailable as exc:
            if self._down is None:
                log.warning("database unavailable, answering 503 until it is back: %s", exc)
            self._down = exc
            self._next_attempt = time.monotonic() + self._retry_interval
            return None
        if self._down is not None:
            log.warning("database reachable again")
            self._down = None
        return self._conn

    def _lost(self, exc: BaseException) -> None:
        log.warning("lost the database connection: %s", " ".join(str(exc).split()))
        close_quietly(self._conn)
        self._conn = None

    def _write(self, group: list[Pending]) -> None:
        started = time.perf_counter()
        results: Sequence[object] | None = None
        for _attempt in (1, 2):
            conn = self._connection()
            if conn is None:
                break
            try:
                with self._guard(conn, f"a group commit of {len(group)} row(s)"):
                    stored = self._store(conn, group)
                    conn.commit()
                # Only now: a commit that failed must not leave its results behind, or a
                # reconnect that fails next would answer them as stored.
                results = stored
                break
            except psycopg2.Error as exc:
                _rollback(conn)
                if is_connection_error(exc):
                    self._lost(exc)
                    continue  # reopen once and retry: the keys make it exact
                results = [self._store_one(conn, item) for item in group]
                break
        if results is None:
            error = self._down or Unavailable("the database is unavailable")
            results = [error] * len(group)
        elif self._on_group is not None:
            self._on_group(len(group), time.perf_counter() - started)
        for item, result in zip(group, results, strict=True):
            item.done(result)

    def _store_one(self, conn, item: Pending) -> object:
        if self._conn is None:
            return self._down or Unavailable("lost the database connection")
        try:
            with self._guard(conn, "a commit of one row"):
                (result,) = self._store(conn, [item])
                conn.commit()
            return result
        except psycopg2.Error as exc:
            _rollback(conn)
            if is_connection_error(exc):
                self._lost(exc)
                return Unavailable(f"lost the database connection: {exc}")
            code = sqlstate(exc) or ""
            if code.startswith(_REFUSED_CLASSES):
                detail = " ".join(str(getattr(exc, "pgerror", "") or exc).split())[:200]
                log.info("database refused a row of endpoint %s: %s", item.endpoint_id, detail)
                return Rejection.malformed("refused_by_database", detail)
            return Unavailable(f"the database failed to store the event ({code or exc})")

    def _store(self, conn, group: list[Pending]) -> list[object]:
        """Every row's result, in ``group``'s order (the transaction is left open)."""
        order = sorted(range(len(group)), key=lambda i: group[i].key)
        results: list[object] = [None] * len(group)
        with conn.cursor() as cur:
            if any(item.nonce for item in group):
                for i in spent_elsewhere(cur, group, order):
                    results[i] = Rejection.unauthorized(
                        "replayed", "this request's nonce was already used"
                    )
            rows = [i for i in order if results[i] is None]
            if not rows:
                return results
            cur.execute(
                INSERT_EVENTS,
                {
                    "types": Array([group[i].event_type for i in rows]),
                    "payloads": Array([group[i].payload for i in rows]),
                    "keys": Array([group[i].key for i in rows]),
                    "delays": Array([0.0] * len(rows)),
                    "channel": CHANNEL,
                    "event_type": group[rows[0]].event_type,
                },
            )
            stored = {row[1] for row in cur.fetchall()}
            counts: dict[int, int] = {}
            for i in rows:
                key = group[i].key
                if key in stored:
                    results[i] = "stored"
                    counts[group[i].endpoint_id] = counts.get(group[i].endpoint_id, 0) + 1
                    stored.discard(key)  # the same key again in this group is a duplicate
                else:
                    results[i] = "duplicate"
            if counts:
                endpoints = sorted(counts)
                cur.execute(
                    COUNT_DELIVERIES,
                    {
                        "endpoints": Array(endpoints),
                        "counts": Array([counts[e] for e in endpoints]),
                    },
                )
        return results

    def _purge_expired(self) -> None:
        self._last_purge = time.monotonic()
        conn = self._connection()
        if conn is None:
            return
        try:
            with self._guard(conn, "the purge of expired rows"), conn.cursor() as cur:
                cur.execute(PURGE_NONCES)
                cur.execute(PURGE_DELIVERIES)
                conn.commit()
        except psycopg2.Error as exc:
            _rollback(conn)
            if is_connection_error(exc):
                self._lost(exc)


def _limited(event_type: str, payload: dict, key: str) -> str:
    """The payload's stored text, held to the queue's limits only (a row given no text)."""
    try:
        accepted = Acceptance.of_handlers((), limits=limits_configured()).accept(
            event_type, payload, key, validate=False
        )
    except (PayloadError, QueueError) as exc:
        raise refused(exc) from None
    return accepted.text


def _rollback(conn) -> None:
    with contextlib.suppress(psycopg2.Error):
        conn.rollback()


def _rows(item) -> list[Pending]:
    return item if isinstance(item, list) else [item]


def _settle_threadsafe(loop, future: asyncio.Future, result: object) -> None:
    loop.call_soon_threadsafe(_settle, future, result)


def _settle(future: asyncio.Future, result: object) -> None:
    if not future.done():
        future.set_result(result)


__all__ = ["GroupWriter", "Pending"]
