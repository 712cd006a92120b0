"""Retention: a customer's messages kept N days after ``sent_at``, then deleted with the
same clean-up as an erasure, in small transactions.

::

    from convdb.privacy import apply_retention, set_retention

    set_retention(db, "acme", 90)          # None: keep forever
    apply_retention(db)                    # {"acme": {"messages": 1200, ...}}

:func:`apply_retention` deletes, per customer with a policy, the messages
sent before the cutoff, :data:`~convdb.config.Settings.retention_batch` at a
time, each batch its own transaction (the dedup rows and attachments they
alone used go in the same transaction, :mod:`convdb.privacy.gc`); then the
conversations left without messages, and the contacts left in no
conversation (with their addresses). Rows an ingestion holds at that moment
are skipped (``SKIP LOCKED``) and left to the next run, so retention never
makes ingestion wait longer than one batch. The counters stay exact: the
database's triggers keep them for every delete.

:func:`maintain` is what the worker runs on a schedule
(``CONVDB_RETENTION_INTERVAL``): retention, the purge of done queue events
older than ``CONVDB_QUEUE_DONE_DAYS``, and of erased events' keys past their
replay window.
"""

from __future__ import annotations

import datetime as dt
import json
import logging

import peewee

from ..exceptions import ConvdbError
from ..sqlarray import Array
from . import gc
from .erase import _candidates_of_messages, customer_id_of

__all__ = ["apply_retention", "maintain", "policies", "set_retention"]

log = logging.getLogger("convdb.privacy")

MAX_DAYS = 36500

# The oldest messages of one customer past its cutoff, locked (and skipped when locked).
_OLD_MESSAGES = """
SELECT m.id FROM conversations c
  JOIN messages m ON m.conversation_id = c.id
 WHERE c.customer_id = %s AND m.sent_at < %s
 ORDER BY m.id
 LIMIT %s
   FOR UPDATE OF m SKIP LOCKED
"""

_EMPTY_CONVERSATIONS = """
SELECT c.id FROM conversations c
 WHERE c.customer_id = %s AND c.message_count = 0
 ORDER BY c.id
 LIMIT %s
   FOR UPDATE SKIP LOCKED
"""

# Contacts in no conversation and sender of no message, and their address rows.
_ORPHAN_CONTACTS = """
SELECT ct.id, ca.email_address_id, ca.phone_number_id
  FROM contacts ct
  LEFT JOIN contact_addresses ca ON ca.contact_id = ct.id
 WHERE ct.customer_id = %s
   AND NOT EXISTS (SELECT 1 FROM conversation_participants p WHERE p.contact_id = ct.id)
   AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.sender_id = ct.id)
   AND ct.id > %s
 ORDER BY ct.id
 LIMIT %s
"""


def set_retention(db: peewee.Database, customer_key: str, days: int | None) -> None:
    """Keep ``customer_key``'s messages ``days`` days after ``sent_at``; None: forever."""
    if days is not None and not (isinstance(days, int) and 1 <= days <= MAX_DAYS):
        raise ConvdbError(f"--days must be a whole number from 1 to {MAX_DAYS}")
    customer_id = customer_id_of(db, customer_key)
    with db.atomic():
        if days is None:
            db.execute_sql("DELETE FROM retention_policies WHERE customer_id = %s", (customer_id,))
        else:
            db.execute_sql(
                "INSERT INTO retention_policies (customer_id, days) VALUES (%s, %s) "
                "ON CONFLICT (customer_id) DO UPDATE SET days = EXCLUDED.days, updated_at = now()",
                (customer_id, days),
            )


def policies(db: peewee.Database) -> list[tuple[int, str, int]]:
    """(customer id, key, days) of every customer with a policy."""
    return db.execute_sql(
        "SELECT c.id, c.key, p.days FROM retention_policies p "
        "JOIN customers c ON c.id = p.customer_id ORDER BY c.id"
    ).fetchall()


def _add(counts: dict, more: dict) -> None:
    for k, v in more.items():
        counts[k] = counts.get(k, 0) + v


def _batch_messages(db, customer_id: int, cutoff: dt.datetime, size: int, counts, files) -> int:
    with db.atomic():
        ids = [r[0] for r in db.execute_sql(_OLD_MESSAGES, (customer_id, cutoff, size))]
        if not ids:
            return 0
        candidates = gc.Candidates.empty()
        _candidates_of_messages(db, candidates, "m.id = ANY(%s::bigint[])", (Array(ids),))
        # Bodies, then URLs, each in id order: ingestion's order (no deadlock).
        for table in ("email_bodies", "xms_bodies", "attachment_urls"):
            gc.lock(db, table, candidates.rows[table])
        deleted = db.execute_sql(
            "DELETE FROM messages WHERE id = ANY(%s::bigint[])", (Array(ids),)
        ).rowcount
        shared, gone = gc.collect(db, candidates)
    _add(counts, {"messages": deleted, **shared})
    files.extend(gone)
    return len(ids)


def _batch_conversations(db, customer_id: int, size: int, counts) -> int:
    with db.atomic():
        ids = [r[0] for r in db.execute_sql(_EMPTY_CONVERSATIONS, (customer_id, size))]
        if ids:
            counts["conversations"] = (
                counts.get("conversations", 0)
                + db.execute_sql(
                    "DELETE FROM conversations WHERE id = ANY(%s::bigint[]) AND message_count = 0",
                    (Array(ids),),
                ).rowcount
            )
    return len(ids)


def _batch_contacts(db, customer_id: int, size: int, after: int, counts) -> int | None:
    """One batch of contacts left in nothing; the last id looked at, None when done."""
    with db.atomic():
        rows = db.execute_sql(_ORPHAN_CONTACTS, (customer_id, after, size)).fetchall()
        if not rows:
            return None
        candidates = gc.Candidates.empty()
        candidates.add("email_addresses", (r[1] for r in rows))
        candidates.add("phone_numbers", (r[2] for r in rows))
        # Addresses before contacts: ingestion's order.
        gc.lock(db, "email_addresses", candidates.rows["email_addresses"])
        gc.lock(db, "phone_numbers", candidates.rows["phone_numbers"])
        ids = sorted({r[0] for r in rows})
        deleted = db.execute_sql(
            """
DELETE FROM contacts ct WHERE ct.id IN (
    SELECT id FROM contacts WHERE id = ANY(%s::bigint[]) ORDER BY id FOR UPDATE SKIP LOCKED)
   AND NOT EXISTS (SELECT 1 FROM conversation_participants p WHERE p.contact_id = ct.id)
   AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.sender_id = ct.id)""",
            (Array(ids),),
        ).rowcount
        shared, _ = gc.collect(db, candidates)
    _add(counts, {"contacts": deleted, **shared})
    return ids[-1]


def _apply_one(db, customer_id: int, days: int, batch: int, now: dt.datetime) -> dict:
    started = dt.datetime.now(dt.UTC)
    cutoff = now - dt.timedelta(days=days)
    counts: dict[str, int] = {}
    files: list[str] = []
    while _batch_messages(db, customer_id, cutoff, batch, counts, files) == batch:
        pass
    while _batch_conversations(db, customer_id, batch, counts) == batch:
        pass
    after: int | None = 0
    while after is not None:
        after = _batch_contacts(db, customer_id, batch, after, counts)
    if files:
        counts["files"] = gc.delete_files(db, files, started)
    counts = {k: v for k, v in counts.items() if v}
    if counts:
        with db.atomic():
            db.execute_sql(
                "INSERT INTO erasures (kind, customer_id, customer_key, counts, started_at) "
                "SELECT 'retention', id, key, %s::jsonb, %s FROM customers WHERE id = %s",
                (json.dumps(counts, sort_keys=True), started, customer_id),
            )
    return counts


def apply_retention(
    db: peewee.Database, *, batch: int | None = None, now: dt.datetime | None = None
) -> dict[str, dict[str, int]]:
    """Delete what every customer's policy no longer keeps; counts per customer key."""
    if batch is None:
        from ..config import load_settings

        batch = load_settings().retention_batch
    now = now or dt.datetime.now(dt.UTC)
    results = {}
    for customer_id, key, days in policies(db):
        counts = _apply_one(db, customer_id, days, batch, now)
        if counts:
            log.info(
                "retention: customer %d: %s",
                customer_id,
                ", ".join(f"{k} {v}" for k, v in sorted(counts.items())),
            )
        results[key] = counts
    return results


def maintain(db: peewee.Database) -> dict[str, object]:
    """Retention, the done-event purge and the erased keys' expiry (the worker's schedule)."""
    from ..config import load_settings
    from ..queue.manager import QueueManager

    settings = load_settings()
    retention = apply_retention(db, batch=settings.retention_batch)
    purged = QueueManager(db).purge_done(settings.queue_done_days * 86400.0)
    with db.atomic():
        expired = db.execute_sql("DELETE FROM erased_event_keys WHERE expires_at <= now()").rowcount
    return {"retention": retention, "events_purged": purged, "keys_expired": expired}
