"""Erasure: a person (a contact of a customer) or a whole customer, in one transaction.

::

    from convdb.privacy import erase_contact, erase_customer

    result = erase_contact(db, "acme", "jane.doe@example.com")   # or contact_id=42
    result.counts       # {"messages": 12, "conversations": 2, ...}
    result.dry_run      # erase_contact(..., dry_run=True) rolls everything back

What goes (``docs/privacy.md`` says it for operators): every message the
contact sent; every conversation in which they are the only contact, with
all its messages; their participation in other conversations; their
addresses' links and the contact itself; the customer's queue events, in
any status, whose payload names one of their addresses (the idempotency
keys of those events are kept hashed, so a redelivery is dropped); and the
dedup rows and attachment files nothing uses any more
(:mod:`convdb.privacy.gc`). Counters are kept by the database's triggers;
search documents go with their messages (045's triggers), and the
conversations the person leaves get theirs recomputed.

One transaction: a person is never seen half erased. A deadlock with an
ingestion (both wait on rows the other holds) rolls the erasure back; it
runs again from the start, up to :data:`ATTEMPTS` times.

Lock order, the same as ingestion's (``docs/privacy.md``): the queue events
first, then the customer (erase customer), the conversations, the
addresses' dedup rows, the contact, the bodies, the attachment URLs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field

import peewee

from .. import dedup
from ..exceptions import ConvdbError
from ..pgerrors import sqlstate
from ..sqlarray import Array
from . import gc

__all__ = ["ATTEMPTS", "ErasureResult", "NothingToErase", "erase_contact", "erase_customer"]

log = logging.getLogger("convdb.privacy")

ATTEMPTS = 5
_RETRY_SQLSTATES = ("40P01", "40001")  # deadlock, serialization failure


class NothingToErase(ConvdbError):
    """The customer exists but no contact matches (the command exits 0 and says so)."""


@dataclass
class ErasureResult:
    """What an erasure deleted (or, with ``dry_run``, would delete)."""

    kind: str
    customer_id: int
    contact_id: int | None
    counts: dict[str, int] = field(default_factory=dict)
    dry_run: bool = False
    files: list[str] = field(default_factory=list)  # stored-file URLs left to remove
    lsn: str | None = None  # the primary's WAL position after the commit

    @property
    def total(self) -> int:
        return sum(self.counts.values())


class _DryRun(Exception):
    """Raised inside the transaction to roll a dry run back."""


# --- finding the person ------------------------------------------------------------------


def customer_id_of(db: peewee.Database, customer_key: str) -> int:
    """The id of the customer ``customer_key``; ConvdbError when there is none."""
    if not isinstance(customer_key, str) or not 0 < len(customer_key) <= 512:
        raise ConvdbError("the customer key must be 1 to 512 characters")
    row = db.execute_sql("SELECT id FROM customers WHERE key = %s", (customer_key,)).fetchone()
    if row is None:
        raise ConvdbError(
            f"no customer with the key {customer_key!r}",
            hint="List them with: SELECT key, name FROM customers",
        )
    return row[0]


def normalize_address(address: str) -> tuple[str, str]:
    """``("email", lowered)`` or ``("phone", e164)``; ConvdbError when it does not normalize."""
    if not isinstance(address, str) or not 0 < len(address) <= 512:
        raise ConvdbError("the address must be 1 to 512 characters")
    try:
        if "@" in address:
            return "email", dedup.normalize_email(address)
        return "phone", dedup.normalize_phone(address)
    except ValueError as exc:
        raise ConvdbError(f"the address does not normalize: {exc}") from None


_CONTACT_BY_ADDRESS = {
    "email": """
SELECT ca.contact_id FROM email_addresses a
  JOIN contact_addresses ca ON ca.email_address_id = a.id AND ca.customer_id = %s
 WHERE a.hash = %s AND a.lowered = %s""",
    "phone": """
SELECT ca.contact_id FROM phone_numbers a
  JOIN contact_addresses ca ON ca.phone_number_id = a.id AND ca.customer_id = %s
 WHERE a.hash = %s AND a.e164 = %s""",
}


def find_contact(
    db: peewee.Database, customer_id: int, address: str | None, contact_id: int | None
) -> int | None:
    """The contact of that customer with that address (or that id), or None."""
    if contact_id is not None:
        row = db.execute_sql(
            "SELECT id FROM contacts WHERE id = %s AND customer_id = %s", (contact_id, customer_id)
        ).fetchone()
        return row[0] if row else None
    kind, normalized = normalize_address(address or "")
    row = db.execute_sql(
        _CONTACT_BY_ADDRESS[kind], (customer_id, dedup.dedup_hash(normalized), normalized)
    ).fetchone()
    return row[0] if row else None


def contact_addresses(db: peewee.Database, contact_id: int) -> tuple[set[str], list, list]:
    """(normalized addresses, email address ids, phone number ids) of a contact."""
    rows = db.execute_sql(
        """
SELECT ca.email_address_id, ca.phone_number_id, coalesce(ea.lowered, pn.e164)
  FROM contact_addresses ca
  LEFT JOIN email_addresses ea ON ea.id = ca.email_address_id
  LEFT JOIN phone_numbers pn ON pn.id = ca.phone_number_id
 WHERE ca.contact_id = %s""",
        (contact_id,),
    ).fetchall()
    return (
        {r[2] for r in rows},
        [r[0] for r in rows if r[0] is not None],
        [r[1] for r in rows if r[1] is not None],
    )


# --- the queue ---------------------------------------------------------------------------

# The customer's events and the addresses their payloads name (from, to[]).
_EVENTS_OF_CUSTOMER = """
SELECT id, idempotency_key, payload -> 'from' ->> 'address',
       CASE jsonb_typeof(payload -> 'to') WHEN 'array' THEN
           ARRAY(SELECT t ->> 'address' FROM jsonb_array_elements(payload -> 'to') t
                  WHERE jsonb_typeof(t) = 'object')
       END
  FROM inbound_events
 WHERE payload -> 'customer' ->> 'key' = %s AND id > %s
 ORDER BY id
 LIMIT 5000
"""


def _normalized(address) -> str | None:
    if not isinstance(address, str) or not address.strip():
        return None
    try:
        return normalize_address(address)[1]
    except ConvdbError:
        return None


def events_naming(db: peewee.Database, customer_key: str, addresses: set[str]) -> list:
    """(id, idempotency key) of the customer's events whose from/to names one of
    ``addresses`` (normalized), any status. Reads every event of the customer:
    the payloads hold the addresses as sent, normalized here as ingestion does."""
    found, after = [], 0
    while True:
        rows = db.execute_sql(_EVENTS_OF_CUSTOMER, (customer_key, after)).fetchall()
        for event_id, key, sender, to in rows:
            named = [sender, *(to or [])]
            if any(_normalized(a) in addresses for a in named if a):
                found.append((event_id, key))
        if len(rows) < 5000:
            return found
        after = rows[-1][0]


def delete_events(db: peewee.Database, events: list, replay_days: int) -> int:
    """Delete ``events`` and keep their keys' hashes for ``replay_days``; how many."""
    if not events:
        return 0
    ids = sorted(e[0] for e in events)
    keys = sorted({hashlib.sha256(k.encode()).hexdigest() for _, k in events if k})
    if keys:
        db.execute_sql(
            """
INSERT INTO erased_event_keys (key_hash, expires_at)
SELECT decode(k, 'hex'), now() + make_interval(days => %s) FROM unnest(%s::text[]) AS u(k)
    ON CONFLICT (key_hash) DO UPDATE SET expires_at = EXCLUDED.expires_at""",
            (replay_days, Array(keys)),
        )
    return db.execute_sql(
        "DELETE FROM inbound_events WHERE id = ANY(%s::bigint[])", (Array(ids),)
    ).rowcount


# --- erasing -----------------------------------------------------------------------------


def _run(db: peewee.Database, work, dry_run: bool) -> ErasureResult:
    """``work(db)`` in one transaction, again after a deadlock; rolled back when ``dry_run``."""
    from ..replicas import current_lsn

    for attempt in range(1, ATTEMPTS + 1):
        try:
            with db.atomic():
                result = work(db)
                result.dry_run = dry_run
                if dry_run:
                    raise _DryRun
            result.lsn = current_lsn(db)
            return result
        except _DryRun:
            return result
        except peewee.DatabaseError as exc:
            if sqlstate(exc) not in _RETRY_SQLSTATES or attempt == ATTEMPTS:
                raise
            log.info("erasure: %s, attempt %d of %d; again", sqlstate(exc), attempt, ATTEMPTS)
            time.sleep(0.05 * attempt)
    raise AssertionError("unreachable")


def _audit(db, result: ErasureResult, customer_key: str | None, started: dt.datetime) -> None:
    db.execute_sql(
        "INSERT INTO erasures (kind, customer_id, customer_key, contact_id, counts, started_at) "
        "VALUES (%s, %s, %s, %s, %s::jsonb, %s)",
        (
            result.kind,
            result.customer_id,
            customer_key,
            result.contact_id,
            json.dumps(result.counts, sort_keys=True),
            started,
        ),
    )


def _column(db, sql: str, *params) -> list:
    return [r[0] for r in db.execute_sql(sql, params).fetchall()]


def _candidates_of_messages(db, candidates: gc.Candidates, where: str, params) -> None:
    """Add the bodies, attachments and URLs of the messages ``where`` selects."""
    rows = db.execute_sql(
        f"""
SELECT m.email_body_id, m.xms_body_id, ma.attachment_id, a.url_id
  FROM messages m
  LEFT JOIN message_attachments ma ON ma.message_id = m.id
  LEFT JOIN attachments a ON a.id = ma.attachment_id
 WHERE {where}""",
        params,
    ).fetchall()
    candidates.add("email_bodies", (r[0] for r in rows))
    candidates.add("xms_bodies", (r[1] for r in rows))
    candidates.add("attachments", (r[2] for r in rows))
    candidates.add("attachment_urls", (r[3] for r in rows))


# Conversations the contact is in where no other contact is (role 'contact').
_ALONE = """
SELECT p.conversation_id FROM conversation_participants p
 WHERE p.contact_id = %(c)s
   AND NOT EXISTS (SELECT 1 FROM conversation_participants o
                    WHERE o.conversation_id = p.conversation_id
                      AND o.role = 'contact' AND o.contact_id <> %(c)s)
 GROUP BY p.conversation_id
"""


def _erase_contact(
    db, customer_id: int, customer_key: str, contact_id: int, replay_days: int
) -> ErasureResult:
    started = dt.datetime.now(dt.UTC)
    result = ErasureResult("contact", customer_id, contact_id)
    counts = result.counts
    addresses, email_ids, phone_ids = contact_addresses(db, contact_id)
    events = events_naming(db, customer_key, addresses)
    counts["events"] = delete_events(db, events, replay_days)
    conversations = _column(
        db,
        "SELECT conversation_id FROM conversation_participants WHERE contact_id = %s "
        "UNION SELECT conversation_id FROM messages WHERE sender_id = %s",
        contact_id,
        contact_id,
    )
    gc.lock(db, "conversations", conversations)
    gc.lock(db, "email_addresses", email_ids)
    gc.lock(db, "phone_numbers", phone_ids)
    gc.lock(db, "contacts", [contact_id])
    # Under these locks no message of theirs, and none in these conversations, can be added.
    alone = [r[0] for r in db.execute_sql(_ALONE, {"c": contact_id}).fetchall()]
    candidates = gc.Candidates.empty()
    candidates.add("email_addresses", email_ids)
    candidates.add("phone_numbers", phone_ids)
    params = (contact_id, Array(alone))
    where = "m.sender_id = %s OR m.conversation_id = ANY(%s::bigint[])"
    _candidates_of_messages(db, candidates, where, params)
    gc.lock(db, "email_bodies", candidates.rows["email_bodies"])
    gc.lock(db, "xms_bodies", candidates.rows["xms_bodies"])
    gc.lock(db, "attachment_urls", candidates.rows["attachment_urls"])
    counts["messages"] = db.execute_sql("DELETE FROM messages m WHERE " + where, params).rowcount
    counts["conversations"] = db.execute_sql(
        "DELETE FROM conversations WHERE id = ANY(%s::bigint[])", (Array(alone),)
    ).rowcount
    counts["participations"] = db.execute_sql(
        "DELETE FROM conversation_participants WHERE contact_id = %s", (contact_id,)
    ).rowcount
    # A conversation they leave keeps no thread key naming their address: its next
    # message from the same endpoints starts a new conversation.
    counts["thread_keys"] = db.execute_sql(
        """
UPDATE conversations c SET thread_key = NULL
 WHERE c.id = ANY(%s::bigint[]) AND c.thread_key IS NOT NULL
   AND EXISTS (SELECT 1 FROM jsonb_array_elements_text(c.thread_key::jsonb) t(v)
                WHERE t.v = ANY(%s::text[]))""",
        (Array(conversations), Array(sorted(addresses))),
    ).rowcount
    counts["addresses"] = db.execute_sql(
        "DELETE FROM contact_addresses WHERE contact_id = %s", (contact_id,)
    ).rowcount
    counts["contacts"] = db.execute_sql(
        "DELETE FROM contacts WHERE id = %s", (contact_id,)
    ).rowcount
    shared, result.files = gc.collect(db, candidates)
    counts.update(shared)
    _audit(db, result, customer_key, started)
    return result


def _erase_customer(db, customer_id: int, customer_key: str, replay_days: int) -> ErasureResult:
    started = dt.datetime.now(dt.UTC)
    result = ErasureResult("customer", customer_id, None)
    counts = result.counts
    events = [
        tuple(r)
        for r in db.execute_sql(
            "SELECT id, idempotency_key FROM inbound_events "
            "WHERE payload -> 'customer' ->> 'key' = %s",
            (customer_key,),
        ).fetchall()
    ]
    counts["events"] = delete_events(db, events, replay_days)
    gc.lock(db, "customers", [customer_id])
    candidates = gc.Candidates.empty()
    rows = db.execute_sql(
        "SELECT email_address_id, phone_number_id FROM contact_addresses WHERE customer_id = %s",
        (customer_id,),
    ).fetchall()
    candidates.add("email_addresses", (r[0] for r in rows))
    candidates.add("phone_numbers", (r[1] for r in rows))
    conversations = _column(db, "SELECT id FROM conversations WHERE customer_id = %s", customer_id)
    gc.lock(db, "conversations", conversations)
    gc.lock(db, "email_addresses", candidates.rows["email_addresses"])
    gc.lock(db, "phone_numbers", candidates.rows["phone_numbers"])
    where = "m.conversation_id = ANY(%s::bigint[])"
    _candidates_of_messages(db, candidates, where, (Array(conversations),))
    gc.lock(db, "email_bodies", candidates.rows["email_bodies"])
    gc.lock(db, "xms_bodies", candidates.rows["xms_bodies"])
    gc.lock(db, "attachment_urls", candidates.rows["attachment_urls"])
    counts["messages"] = db.execute_sql(
        "DELETE FROM messages m WHERE " + where, (Array(conversations),)
    ).rowcount
    counts["conversations"] = len(conversations)
    counts["contacts"] = _column(
        db, "SELECT count(*) FROM contacts WHERE customer_id = %s", customer_id
    )[0]
    counts["addresses"] = len(rows)
    counts["customers"] = db.execute_sql(
        "DELETE FROM customers WHERE id = %s", (customer_id,)
    ).rowcount
    shared, result.files = gc.collect(db, candidates)
    counts.update(shared)
    _audit(db, result, customer_key, started)
    return result


def _replay_days() -> int:
    from ..config import load_settings

    return load_settings().erasure_replay_days


def erase_contact(
    db: peewee.Database,
    customer_key: str,
    address: str | None = None,
    *,
    contact_id: int | None = None,
    dry_run: bool = False,
    remove_files: bool = True,
) -> ErasureResult:
    """Erase one person from one customer's data (see the module); what was deleted.

    ``address`` (an email address or a phone number, normalized as ingestion
    does) or ``contact_id``. Raises :class:`~convdb.exceptions.ConvdbError`
    for an unknown customer or an address that does not normalize (nothing
    changed), :class:`NothingToErase` when no contact of that customer
    matches. Attachment files are removed after the commit unless
    ``remove_files`` is false (the caller then passes ``result.files`` to
    :func:`convdb.privacy.gc.delete_files`).
    """
    if (address is None) == (contact_id is None):
        raise ConvdbError("give an address or a contact id, not both")
    customer_id = customer_id_of(db, customer_key)
    if address is not None:
        normalize_address(address)  # a bad address is refused before anything runs
    contact = find_contact(db, customer_id, address, contact_id)
    if contact is None:
        raise NothingToErase(f"no contact of {customer_key!r} matches; nothing erased")
    replay_days = _replay_days()
    started = dt.datetime.now(dt.UTC)
    result = _run(
        db, lambda d: _erase_contact(d, customer_id, customer_key, contact, replay_days), dry_run
    )
    _finish(db, result, started, remove_files)
    return result


def erase_customer(
    db: peewee.Database, customer_key: str, *, dry_run: bool = False, remove_files: bool = True
) -> ErasureResult:
    """Erase a customer and everything of theirs (see :func:`erase_contact`)."""
    customer_id = customer_id_of(db, customer_key)
    replay_days = _replay_days()
    started = dt.datetime.now(dt.UTC)
    result = _run(db, lambda d: _erase_customer(d, customer_id, customer_key, replay_days), dry_run)
    _finish(db, result, started, remove_files)
    return result


def _finish(db, result: ErasureResult, started: dt.datetime, remove_files: bool) -> None:
    if result.dry_run:
        result.counts["files"] = len(result.files)
        result.files = []
    elif remove_files:
        result.counts["files"] = gc.delete_files(db, result.files, started)
        result.files = []
    log.info(
        "erasure of a %s of customer %d: %s",
        result.kind,
        result.customer_id,
        ", ".join(f"{k} {v}" for k, v in sorted(result.counts.items())),
    )
