"""Every database operation of the queue, with driver errors translated once.

:class:`QueueManager` wraps a peewee database (one connection per thread) and
runs the statements of :mod:`convdb.queue.queries`. Driver errors leave it as
:class:`~convdb.exceptions.QueueError` (cause kept);
:func:`convdb.pgerrors.is_transient` decides whether a failure is worth retrying.
"""

from __future__ import annotations

import contextlib
import select
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import peewee
import psycopg2

from ..exceptions import ConvdbError, QueueError
from ..models import InboundEvent
from ..pgerrors import sqlstate
from ..sqlarray import Array
from . import queries
from .limits import BATCH_BYTES, Limits

INSERT_SLICE = 10_000  # enqueue: rows per statement


def _text(value: object) -> str:
    try:
        text = str(value)
    except Exception:  # a broken __str__ must not fail the event's neighbours
        text = "<unprintable>"
    # last_error is TEXT: no NUL, valid UTF-8.
    text = text.replace("\x00", "\\x00").encode("utf-8", "replace").decode("utf-8")
    return " ".join(text.split())


def describe(exc: BaseException) -> str:
    """A one-paragraph, readable error for ``last_error`` (storable, at most 2,000 characters)."""
    if isinstance(exc, ConvdbError):
        text = _text(exc)
    else:
        args = getattr(exc, "args", ())
        inner = args[0] if len(args) == 1 and isinstance(args[0], BaseException) else exc
        text = f"{type(inner).__name__}: {_text(inner)}".rstrip(": ")
    return text[:2000]


@contextlib.contextmanager
def translated(action: str) -> Iterator[None]:
    """Turn driver errors raised while doing ``action`` into :class:`QueueError`."""
    try:
        yield
    except (peewee.DatabaseError, psycopg2.Error) as exc:
        hint = None
        if sqlstate(exc) in ("42P01", "42703"):  # undefined table / column
            hint = "Run `convdb migrate` to create or update the queue table."
        raise QueueError(f"could not {action}: {describe(exc)}", hint=hint) from exc


@dataclass
class QueueStats:
    by_type: list[tuple[str, str, int]] = field(default_factory=list)
    oldest_pending_seconds: float | None = None
    retrying: int = 0
    scheduled: int = 0
    expired_leases: int = 0
    #: delivery reports waiting for their message (convdb.ingest.status)
    early_reports: int = 0

    def count(self, status: str) -> int:
        return sum(n for _, s, n in self.by_type if s == status)


def _dead_selection(event_type, ids, max_id, limit) -> dict:
    return {
        "event_type": event_type,
        "ids": Array(list(ids)) if ids else None,
        "max_id": max_id,
        "limit": limit,
    }


class QueueManager:
    """The queue's database operations on ``db`` (a peewee PostgreSQL database)."""

    def __init__(self, db: peewee.Database) -> None:
        self.db = db
        self._listening_pid: int | None = None  # the connection that LISTENs

    # --- connection ------------------------------------------------------------

    def connect(self) -> None:
        with translated("connect to the database"):
            self.db.connect(reuse_if_open=True)

    def reset_connection(self) -> None:
        """Drop this thread's connection (after it broke) so the next use reconnects."""
        try:
            self.db.close()
        except Exception:
            # peewee refuses to close a connection it believes is mid-transaction
            # or already gone; the connection is dead either way: forget it.
            state = self.db._state
            with contextlib.suppress(Exception):
                state.conn.close()
            state.reset()

    def listen(self) -> None:
        """LISTEN on this thread's connection (again after a reconnect)."""
        with translated("listen for new events"):
            pid = self.db.connection().info.backend_pid
            if self._listening_pid != pid:
                self.db.execute_sql(f"LISTEN {queries.CHANNEL}")
                self._listening_pid = pid

    def wait(self, timeout: float, wake_fd: int | None = None) -> bool:
        """Wait up to ``timeout`` s for a NOTIFY (True) or ``wake_fd`` to be readable."""
        conn = self.db.connection()
        fds = [conn] + ([wake_fd] if wake_fd is not None else [])
        with translated("wait for new events"):
            conn.poll()
            if not conn.notifies:
                ready, _, _ = select.select(fds, [], [], max(timeout, 0))
                if conn in ready:
                    conn.poll()
            notified = bool(conn.notifies)
            conn.notifies.clear()
        return notified

    # --- the worker's statements --------------------------------------------------

    def claim(
        self,
        worker: str,
        limit: int,
        lease: float,
        max_attempts: int,
        *,
        max_bytes: int = BATCH_BYTES,
        max_payload_bytes: int = Limits.payload_bytes,
    ):
        """Claim up to ``limit`` due events, about ``max_bytes`` of payloads (committed at once).

        Returns ``(claimed, abandoned)``: ``InboundEvent`` instances now
        ``processing`` under ``worker``'s lease, and the count of expired
        leases that went dead (the event killed its worker alone on its last
        attempt). A claimed event's ``payload`` is its JSON *text*, still to
        be decoded (:func:`convdb.queue.limits.decode`), or None when it is
        over ``max_payload_bytes`` (``payload_bytes`` says how big it is).
        """
        params = {
            "limit": limit,
            "worker": worker,
            "lease": lease,
            "max_attempts": max_attempts,
            "max_bytes": max_bytes,
            "max_payload_bytes": max_payload_bytes,
        }
        with translated("claim events"):
            cursor = self.db.execute_sql(queries.CLAIM, params)
            columns = [c[0] for c in cursor.description]
            rows = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
        claimed = []
        for row in sorted(rows, key=lambda r: r["id"]):
            if row["status"] == "processing":
                # The row as read, nothing dirty: what InboundEvent(**row) followed
                # by _dirty.clear() gives, without a setattr per field (a third
                # of a no-op drain's Python time).
                event = InboundEvent(__no_default__=True)
                event.__data__ = row
                claimed.append(event)
        return claimed, len(rows) - len(claimed)

    def lock_owned(self, ids: Sequence[int], worker: str) -> set[int]:
        cursor = self.db.execute_sql(queries.LOCK_OWNED, {"ids": Array(ids), "worker": worker})
        return {row[0] for row in cursor.fetchall()}

    def claim_done(self, ids: Sequence[int], worker: str) -> set[int]:
        """Mark the events still ours done (in the open transaction); their ids."""
        cursor = self.db.execute_sql(queries.CLAIM_DONE, {"ids": Array(ids), "worker": worker})
        return {row[0] for row in cursor.fetchall()}

    def refuse(self, event_id: int, worker: str, error: str) -> None:
        """``dead`` instead of ``done`` (after :meth:`claim_done`, same transaction)."""
        self.db.execute_sql(queries.REFUSE, {"id": event_id, "worker": worker, "error": error})

    def savepoint(self, first: bool) -> None:
        # One round trip per event: release the previous event's savepoint and
        # open the next one in a single call.
        sql = (
            "SAVEPOINT convdb_event"
            if first
            else ("RELEASE SAVEPOINT convdb_event; SAVEPOINT convdb_event")
        )
        self.db.execute_sql(sql)

    def rollback_to_savepoint(self) -> None:
        self.db.execute_sql("ROLLBACK TO SAVEPOINT convdb_event")

    def mark_done(self, ids: Sequence[int], worker: str) -> None:
        if ids:
            self.db.execute_sql(queries.MARK_DONE, {"ids": Array(ids), "worker": worker})

    def mark_dead(self, event_id: int, worker: str, error: str) -> None:
        params = {"id": event_id, "worker": worker, "error": error}
        self.db.execute_sql(queries.MARK_DEAD, params)

    def mark_retry(self, event_id: int, worker: str, error: str, delay: float) -> None:
        params = {"id": event_id, "worker": worker, "error": error, "delay": delay}
        self.db.execute_sql(queries.MARK_RETRY, params)

    def release(self, ids: Sequence[int], worker: str) -> None:
        if ids:
            self.db.execute_sql(queries.RELEASE, {"ids": Array(ids), "worker": worker})

    def next_due(self) -> float | None:
        with translated("look for the next due event"):
            return self.db.execute_sql(queries.NEXT_DUE).fetchone()[0]

    def depth(self) -> int:
        with translated("count pending events"):
            return self.db.execute_sql(queries.DEPTH).fetchone()[0]

    # --- operating ------------------------------------------------------------------

    def stats(self) -> QueueStats:
        with translated("read queue statistics"):
            by_type = self.db.execute_sql(queries.STATS_BY_TYPE).fetchall()
            oldest, retrying, scheduled, expired = self.db.execute_sql(
                queries.STATS_SUMMARY
            ).fetchone()
            early = self.db.execute_sql(queries.EARLY_REPORTS).fetchone()[0]
        return QueueStats([tuple(r) for r in by_type], oldest, retrying, scheduled, expired, early)

    def retry_dead(
        self,
        event_type: str | None = None,
        ids: Sequence[int] | None = None,
        *,
        max_id: int | None = None,
        limit: int | None = None,
    ) -> int:
        """Dead events (all, of ``event_type``, the given ``ids``, only ids up to
        ``max_id``) back to pending with their attempts reset, at most ``limit``
        of them, oldest first, in one transaction; how many."""
        with translated("retry dead events"), self.db.atomic():
            params = _dead_selection(event_type, ids, max_id, limit)
            count = self.db.execute_sql(queries.RETRY_DEAD, params).fetchone()[0]
            if count:
                self.notify("retry")
        return count

    def purge_dead(
        self,
        event_type: str | None = None,
        ids: Sequence[int] | None = None,
        *,
        max_id: int | None = None,
        limit: int | None = None,
    ) -> int:
        """Delete dead events chosen as :meth:`retry_dead` chooses them; how many."""
        with translated("purge dead events"), self.db.atomic():
            params = _dead_selection(event_type, ids, max_id, limit)
            return self.db.execute_sql(queries.PURGE_DEAD, params).rowcount

    def purge_done(self, older_than_seconds: float, slice_size: int = 10_000) -> int:
        total = 0
        while True:
            with translated("purge done events"), self.db.atomic():
                params = {"age": older_than_seconds, "limit": slice_size}
                deleted = self.db.execute_sql(queries.PURGE_DONE, params).rowcount
            total += deleted
            if deleted < slice_size:
                return total

    # --- enqueue ------------------------------------------------------------------------

    def insert(self, rows: Sequence[tuple[str, str, str | None, float]]) -> list[int]:
        """Store ``(event_type, payload JSON text, idempotency_key, delay_seconds)`` rows; new ids.

        The text is what :func:`convdb.queue.limits.encode` made (checked
        against the limits). One ``INSERT ... SELECT FROM unnest(...)`` per
        :data:`INSERT_SLICE` rows with its ``NOTIFY`` (idle workers wake when
        it commits); rows whose idempotency key is already stored are
        skipped. Outside a transaction, up to one slice is a single statement
        that commits on its own (one round trip); more slices run in one
        transaction; inside the caller's transaction it is a savepoint, so a
        failure leaves that transaction usable.
        """
        if not rows:
            return []
        slices = [rows[i : i + INSERT_SLICE] for i in range(0, len(rows), INSERT_SLICE)]
        with translated("store events"):
            if len(slices) == 1 and not self.db.in_transaction():
                return self._insert(slices[0])
            with self.db.atomic():
                return [i for part in slices for i in self._insert(part)]

    def _insert(self, rows: Sequence[tuple[str, str, str | None, float]]) -> list[int]:
        params = {
            "types": Array([r[0] for r in rows]),
            "payloads": Array([r[1] for r in rows]),
            "keys": Array([r[2] for r in rows]),
            "delays": Array([float(r[3]) for r in rows]),
            "channel": queries.CHANNEL,
            "event_type": rows[0][0],
        }
        return [r[0] for r in self.db.execute_sql(queries.INSERT_EVENTS, params).fetchall()]

    def notify(self, event_type: str) -> None:
        self.db.execute_sql(queries.NOTIFY, {"channel": queries.CHANNEL, "event_type": event_type})
