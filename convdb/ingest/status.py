"""Delivery status: the ``message.status`` handler and the early reports' rendezvous.

::

    from convdb.ingest.status import record_reports
    with db.atomic():
        record_reports(db, [parse_status(p) for p in payloads])

The model (``docs/status.md``): a message's status is the highest rank among
its reports, ``queued`` < ``sent`` < ``delivered`` < ``failed`` < ``read``,
and ``status_at`` the earliest ``at`` among the reports with that status.
That is a join in a lattice: :func:`merge` is commutative, associative and
idempotent, so folding reports into the message's current state in any
order, any grouping, and any number of times gives the same state. A late
report, or the same report twice, changes nothing; the UPDATE skips the
message then (no dead row).

Every report is kept once in ``message_status_reports``: by the provider's
report id where it has one, else by (provider, message id, word, ``at``).

Early reports: a report whose message is not stored yet is kept with
``message_id`` NULL, and the ``message.sent`` path (:func:`attach_early`,
called by :func:`convdb.ingest.writer.ingest_messages`) applies it when the
message arrives. The ``message.sent`` path takes a transaction-level
advisory lock per (provider, message id) (:func:`lock`, exclusive, in key
order) before it stores the messages; a report that finds no message takes
the same lock (shared) and looks again: so one of the two always sees the
other's committed row. Without it a report and its message stored at the
same moment by two workers could each miss the other, and the report would
wait forever. A report whose message is stored takes no lock: two reports of
one message meet on the message's row, and the fold is order-free. Early reports are purged
after ``CONVDB_STATUS_EARLY_DAYS`` (:func:`purge_early`, run by this
handler at most every :data:`PURGE_INTERVAL` seconds per process).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Sequence

import peewee

from ..db import database
from ..dedup import dedup_hash
from ..exceptions import PayloadError
from .payload import STATUSES, StatusReport, parse_status
from .statements import columns, create, first, run, unnest

__all__ = [
    "attach_early",
    "bare",
    "early_count",
    "handle_status",
    "handle_status_batch",
    "lock",
    "merge",
    "purge_early",
    "record_reports",
]

RANK = {status: rank for rank, status in enumerate(STATUSES, 1)}
PURGE_INTERVAL = 600.0
PURGE_SLICE = 10_000

# (customer, provider) of each report, found by key and (kind, name).
PROVIDERS = f"""
SELECT c.id, p.id
  FROM {unnest(("text", "text", "text"))} WITH ORDINALITY AS u(key, kind, name, i)
  LEFT JOIN LATERAL (SELECT id FROM customers WHERE key = u.key LIMIT 1) c ON true
  LEFT JOIN LATERAL (
        SELECT id FROM providers
         WHERE customer_id = c.id AND kind = u.kind AND name = u.name LIMIT 1) p ON true
 ORDER BY u.i
"""

# One advisory lock per (provider, message id), in the order of the array (sorted
# by the caller): aggregates evaluate row by row in the function scan's order.
# The message.sent path takes them exclusive; a report that found no message,
# shared (reports never wait for one another, only for a message being stored).
LOCK = "SELECT count(pg_advisory_xact_lock(k)) FROM unnest(%s::bigint[]) AS k"
LOCK_SHARED = "SELECT count(pg_advisory_xact_lock_shared(k)) FROM unnest(%s::bigint[]) AS k"

# The outbound message each report is about, if stored: its id as the report
# gives it (without angle brackets) or inside them, as an email Message-ID.
MATCH = f"""
SELECT m.id
  FROM {unnest(("bigint", "text"))} WITH ORDINALITY AS u(provider_id, message_id, i)
  LEFT JOIN LATERAL (
        SELECT id FROM messages
         WHERE provider_id = u.provider_id
           AND provider_message_id = ANY (ARRAY[u.message_id, '<' || u.message_id || '>'])
           AND direction = 'outbound'
         ORDER BY id LIMIT 1) m ON true
 ORDER BY u.i
"""

REPORT_TYPES = ("bigint", "text", "bigint", "text", "text", "text", "timestamptz", "text")

# Each report once: the two partial unique indexes (by event key, else by
# message, word and time) make a redelivered report a no-op.
INSERT_REPORTS = f"""
INSERT INTO message_status_reports
       (provider_id, provider_message_id, message_id, event_key, word, status, at, detail)
SELECT * FROM {unnest(REPORT_TYPES)}
ON CONFLICT DO NOTHING
"""

# The fold of :func:`merge`, in SQL: only messages whose state changes are written.
MERGE = f"""
UPDATE messages m
   SET status = u.status,
       status_at = CASE WHEN m.status = u.status THEN least(m.status_at, u.at) ELSE u.at END
  FROM {unnest(("bigint", "text", "timestamptz"))} AS u(id, status, at)
 WHERE m.id = u.id
   AND (m.status IS NULL
        OR array_position(%s::text[], u.status) > array_position(%s::text[], m.status)
        OR (u.status = m.status AND u.at < m.status_at))
"""

# The message.sent path: early reports of the messages just stored get their
# message, and their statuses come back to be folded in.
ATTACH = f"""
WITH u AS (SELECT * FROM {unnest(("bigint", "bigint", "text"))} AS u(id, provider_id, message_id))
UPDATE message_status_reports r
   SET message_id = u.id
  FROM u
 WHERE r.message_id IS NULL
   AND r.provider_id = u.provider_id AND r.provider_message_id = u.message_id
RETURNING r.message_id, r.status, r.at
"""

PURGE = """
DELETE FROM message_status_reports
 WHERE id IN (SELECT id FROM message_status_reports
               WHERE message_id IS NULL AND received_at < now() - %s * interval '1 day'
               LIMIT %s)
"""

_purge_lock = threading.Lock()
_last_purge = [0.0]


def merge(a: tuple[str, dt.datetime] | None, b: tuple[str, dt.datetime] | None):
    """The state from two (status, at) states: the higher rank; the earlier ``at`` on a tie."""
    if a is None:
        return b
    if b is None:
        return a
    if RANK[b[0]] != RANK[a[0]]:
        return b if RANK[b[0]] > RANK[a[0]] else a
    return a if a[1] <= b[1] else b


def bare(message_id: str) -> str:
    """A message id without the angle brackets of an email Message-ID (``<a@b>`` -> ``a@b``):
    reports are kept, matched and locked by it, so either form finds the other."""
    if len(message_id) > 2 and message_id[0] == "<" and message_id[-1] == ">":
        return message_id[1:-1]
    return message_id


def lock_key(provider_id: int, message_id: str) -> int:
    """The advisory lock key of (provider, message id): a 64-bit hash of the bare id."""
    return dedup_hash(f"convdb.status\x1f{provider_id}\x1f{bare(message_id)}")


def lock(db: peewee.Database, keys: Sequence[tuple[int, str]], *, shared: bool = False) -> None:
    """Take the transaction-level advisory locks of (provider id, message id) pairs, sorted:
    exclusive for the ``message.sent`` path, ``shared`` for early reports."""
    hashes = sorted({lock_key(p, m) for p, m in keys})
    if hashes:
        run(db, LOCK_SHARED if shared else LOCK, [hashes])


def _fold(db: peewee.Database, states: dict[int, tuple[str, dt.datetime]]) -> None:
    if not states:
        return
    ids = sorted(states)
    ranks = list(STATUSES)
    run(
        db,
        MERGE,
        [ids, [states[i][0] for i in ids], [states[i][1] for i in ids], ranks, ranks],
    )


def _providers(db: peewee.Database, reports: Sequence[StatusReport]) -> list[int]:
    """Each report's provider id; the customer and provider are created when missing
    (a report for an unknown provider is an early report, not a reason to refuse it)."""
    wanted = first(
        ((r.customer_key, r.provider_kind, r.provider_name), r.customer_name) for r in reports
    )
    names = list(wanted)
    found = run(db, PROVIDERS, columns(names, 3))
    customers = {key[0]: c for key, (c, _) in zip(names, found, strict=True) if c is not None}
    new = first(((key[0],), (wanted[key],)) for key in names if key[0] not in customers)
    for (key,), cid in create(db, "customers", [("key", "text")], [("name", "text")], new).items():
        customers[key] = cid
    providers = {key: p for key, (_, p) in zip(names, found, strict=True) if p is not None}
    missing = {(customers[k[0]], k[1], k[2]): () for k in names if k not in providers}
    columns_ = [("customer_id", "bigint"), ("kind", "text"), ("name", "text")]
    made = create(db, "providers", columns_, [], missing)
    for k in names:
        providers.setdefault(k, made.get((customers[k[0]], k[1], k[2])))
    return [providers[(r.customer_key, r.provider_kind, r.provider_name)] for r in reports]


def record_reports(db: peewee.Database, reports: Sequence[StatusReport]) -> None:
    """Keep each report once and fold it into its message's status, in the caller's
    transaction; a report for a message not stored yet waits for it (early)."""
    if not reports:
        return
    providers = _providers(db, reports)
    keys = [(p, bare(r.message_id)) for p, r in zip(providers, reports, strict=True)]
    messages = _match(db, keys)
    rows = sorted(
        (
            (p, k, m, r.event_id, r.word, r.status, r.at, r.detail)
            for (p, k), r, m in zip(keys, reports, messages, strict=True)
            if m is not None or not r.refused  # a refusal's record needs its message
        ),
        key=lambda row: (row[0], row[1], row[4], row[6], row[3] or ""),
    )
    run(db, INSERT_REPORTS, columns(rows, 8))
    states: dict[int, tuple[str, dt.datetime]] = {}
    for r, m in zip(reports, messages, strict=True):
        if m is not None and r.status is not None:
            states[m] = merge(states.get(m), (r.status, r.at))
    _fold(db, states)


def _match(db: peewee.Database, keys: list[tuple[int, str]]) -> list[int | None]:
    """Each key's stored outbound message, or None. A key not found is locked (shared)
    and looked up again: if a ``message.sent`` transaction was storing it, the lock
    waited for its commit and the second look, a new snapshot, sees it; if not, that
    transaction waits for ours, and then finds our early report."""
    found = [row[0] for row in run(db, MATCH, columns(keys, 2))]
    missing = [i for i, m in enumerate(found) if m is None]
    if missing:
        lock(db, [keys[i] for i in missing], shared=True)
        again = run(db, MATCH, columns([keys[i] for i in missing], 2))
        for i, (m,) in zip(missing, again, strict=True):
            found[i] = m
    return found


def attach_early(db: peewee.Database, stored: Sequence[tuple[int, int, str]]) -> None:
    """Apply the early reports of messages just stored: (message id, provider id, message id
    at the provider) each. The caller took :func:`lock` for them before storing."""
    if not stored:
        return
    rows = sorted((m, p, bare(k)) for m, p, k in stored)
    states: dict[int, tuple[str, dt.datetime]] = {}
    for message, status, at in run(db, ATTACH, columns(rows, 3)):
        if status is not None:
            states[message] = merge(states.get(message), (status, at))
    _fold(db, states)


def purge_early(db: peewee.Database, days: float, slice_size: int = PURGE_SLICE) -> int:
    """Delete early reports older than ``days`` (at most ``slice_size``); how many."""
    cursor = db.execute_sql(PURGE, (days, slice_size))
    return cursor.rowcount


def early_count(db: peewee.Database) -> int:
    """Early reports waiting for their message."""
    sql = "SELECT count(*) FROM message_status_reports WHERE message_id IS NULL"
    return db.execute_sql(sql).fetchone()[0]


def _purge_now() -> bool:
    with _purge_lock:
        now = time.monotonic()
        if now - _last_purge[0] < PURGE_INTERVAL:
            return False
        _last_purge[0] = now
        return True


def _maybe_purge(db: peewee.Database) -> None:
    if _purge_now():
        from ..config import load_settings

        purge_early(db, load_settings().status_early_days)


def handle_status(event) -> None:
    """Queue handler for ``message.status``: validate, then record ``event.payload``."""
    record_reports(database, [parse_status(event.payload)])
    _maybe_purge(database)


def handle_status_batch(events: Sequence) -> dict[int, PayloadError]:
    """Batch handler of ``message.status``: every valid report in one go; the refused by id."""
    refused: dict[int, PayloadError] = {}
    valid = []
    for event in events:
        try:
            valid.append(parse_status(event.payload))
        except PayloadError as exc:
            refused[event.id] = exc
    record_reports(database, valid)
    _maybe_purge(database)
    return refused
