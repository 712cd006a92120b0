"""The one writer of canonical messages: a batch, set-based, in the caller's transaction.

::

    from convdb.ingest import ingest_message, ingest_messages, parse_message
    with db.atomic():
        ids = ingest_messages(db, [parse_message(p) for p in payloads])
        one = ingest_message(db, parse_message(payload))  # a batch of one

One statement (:data:`LOOKUP`) finds what already exists for every message
of the batch; then each kind of row still missing is created in one
statement for the whole batch (:func:`~convdb.ingest.statements.create`,
``ON CONFLICT DO NOTHING``, keys in sorted order). Every statement has a
fixed text and is prepared once per connection, so a batch of one costs a
handful of round trips and no planning. The rules, in order:

1. the customer by ``customer.key`` (created with ``customer.name``), its
   provider by (kind, name);
2. a message already stored under (provider, ``message_id``), or earlier in
   the batch, is a redelivery: nothing of it is written, its result is None;
3. the customer's own address becomes an ``endpoint_mappings`` row;
4. the conversation by ``conversation_key``, else by its thread key: the
   channel (email, or SMS and MMS together), the customer's endpoint and the
   first contact's, normalized; a new one takes the first message's subject
   as its topic;
5. addresses and contacts (:mod:`convdb.ingest.contacts`): the customer's
   own address is a participant with the role ``customer``, the other side's
   addresses with the role ``contact``;
6. bodies in ``email_bodies`` or ``xms_bodies`` (an empty body has none)
   and attachment URLs (``attachment_urls``), then participants and
   messages (with their sender, ``sender_id``) in one statement, then
   attachments. Dedup rows go through :func:`convdb.dedup.intern_values`;
7. a new outbound message takes the delivery reports that came before it
   (:func:`convdb.ingest.status.attach_early`).

"First" is the order of the messages: whatever the batch's size or split,
the same messages in the same order write the same rows (ids aside).

The conversation counters are not written here: the database's
statement-level triggers keep them for every writer (``docs/ingestion.md``).

Concurrency: unique constraints and ``ON CONFLICT`` keep concurrent workers
from creating anything twice, and every insert takes its keys in sorted
order. Existing rows are read without a lock, then the ones a batch will
reference are locked ``FOR KEY SHARE`` (customers, providers,
conversations, addresses, contacts, bodies, URLs, in that order, each by
id) so that an erasure cannot delete them under it (``docs/privacy.md``,
Concurrency); the contacts whose name a batch learns and, in the counter
triggers, the conversations are locked for update, in id order. A 64-bit hash collision raises
:class:`~convdb.exceptions.DedupCollisionError` for the whole batch (the
worker's per-event fallback then sends only the culprit ``dead``); any error
aborts the whole batch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import peewee

from .. import dedup
from ..exceptions import TransientError
from . import contacts, status
from .payload import CanonicalMessage
from .statements import columns, create, first, intern, refresh_plans, run, unnest

__all__ = ["ingest_message", "ingest_messages"]


_BODIES = {"email": dedup.EMAIL_BODIES, "xms": dedup.XMS_BODIES}

# What exists already, per message, in one statement: its customer, provider,
# a stored copy (a redelivery), the customer's endpoint mapping, its
# conversation (by key or by thread key: the other one is NULL) and its body
# (in the table of its channel: the other hash is NULL). Each is a LATERAL
# subquery with LIMIT 1, which the planner keeps as one index probe per
# message whatever the sizes: as plain joins, the generic plan of this
# prepared statement (which guesses 10 messages) hashes whole small tables.
LOOKUP = f"""
SELECT c.id, p.id, m.id IS NOT NULL, e.id, coalesce(k.id, t.id),
       coalesce(eb.id, xb.id), coalesce(eb.normalized, xb.normalized)
  FROM {unnest(("text", "text", "text", "text", "text", "text", "text", "bigint", "bigint"))}
       WITH ORDINALITY AS u(customer_key, kind, provider, message_id, endpoint,
                            conversation_key, thread_key, email_body, xms_body, i)
  LEFT JOIN LATERAL (SELECT id FROM customers WHERE key = u.customer_key LIMIT 1) c ON true
  LEFT JOIN LATERAL (
        SELECT id FROM providers
         WHERE customer_id = c.id AND kind = u.kind AND name = u.provider LIMIT 1) p ON true
  LEFT JOIN LATERAL (
        SELECT id FROM messages
         WHERE provider_id = p.id AND provider_message_id = u.message_id LIMIT 1) m ON true
  LEFT JOIN LATERAL (
        SELECT id FROM endpoint_mappings
         WHERE customer_id = c.id AND kind = u.kind AND normalized = u.endpoint LIMIT 1) e ON true
  LEFT JOIN LATERAL (
        SELECT id FROM conversations
         WHERE customer_id = c.id AND key = u.conversation_key LIMIT 1) k ON true
  LEFT JOIN LATERAL (
        SELECT id FROM conversations
         WHERE customer_id = c.id AND thread_key = u.thread_key LIMIT 1) t ON true
  LEFT JOIN LATERAL (
        SELECT id, normalized FROM email_bodies WHERE hash = u.email_body LIMIT 1) eb ON true
  LEFT JOIN LATERAL (
        SELECT id, normalized FROM xms_bodies WHERE hash = u.xms_body LIMIT 1) xb ON true
 ORDER BY u.i
"""

MESSAGE_TYPES = (
    "bigint",
    "text",
    "bigint",
    "text",
    "bigint",
    "bigint",
    "timestamptz",
    "timestamptz",
    "bigint",
)

# The participants and the messages in one statement: the counter triggers of
# both tables then run at its end, the messages' one first (it recounts the
# participants too), so the participants' one finds nothing left to change
# and a new conversation is written once, not twice (migration 023).
MESSAGES = f"""
WITH participants AS (
    INSERT INTO conversation_participants (conversation_id, contact_id, role)
    SELECT * FROM {unnest(("bigint", "bigint", "text"))}
        ON CONFLICT DO NOTHING
)
INSERT INTO messages (provider_id, provider_message_id, conversation_id, direction,
                      email_body_id, xms_body_id, sent_at, received_at, sender_id)
SELECT * FROM {unnest(MESSAGE_TYPES)} AS u(p, k, c, d, e, x, s, r, f) ORDER BY p, k
    ON CONFLICT (provider_id, provider_message_id) DO NOTHING
RETURNING id, provider_id, provider_message_id
"""


@dataclass
class _Row:
    """One message of the batch and the ids of what it refers to."""

    msg: CanonicalMessage
    customer: int | None
    provider: int | None
    stored: bool
    endpoint: int | None
    conversation: int | None
    body: int | None
    body_text: str | None  # the normalized text stored under the body's hash
    normalized_body: str
    conversation_key: tuple[str, str]


def ingest_message(db: peewee.Database, msg: CanonicalMessage) -> int | None:
    """Write ``msg``; the new message's id, or None if it was already stored."""
    return ingest_messages(db, [msg])[0]


def ingest_messages(db: peewee.Database, messages: Sequence[CanonicalMessage]) -> list[int | None]:
    """Write ``messages`` in order; per message, its new id or None if already stored.

    Runs in the caller's transaction (wrap it in ``db.atomic()``). Any error
    aborts the whole batch.
    """
    if not messages:
        return []
    refresh_plans(db, len(messages))
    rows = _lookup(db, messages)
    _customers(db, rows)
    _providers(db, rows)
    todo = _not_stored(rows)
    results: list[int | None] = [None] * len(messages)
    if not todo:
        return results
    batch = [rows[i] for i in todo]
    _endpoints(db, batch)
    _conversations(db, batch)
    _pin(db, batch)
    people = contacts.people(db, batch)
    urls = _attachment_urls(db, [r.msg for r in batch])
    outbound = [(r.provider, r.msg.message_id) for r in batch if r.msg.direction == "outbound"]
    status.lock(db, outbound)  # before the insert: see convdb.ingest.status
    ids = _messages(db, batch, people)
    _attachments(db, [r.msg for r in batch], ids, urls)
    status.attach_early(
        db,
        [
            (message_id, r.provider, r.msg.message_id)
            for r, message_id in zip(batch, ids, strict=True)
            if message_id is not None and r.msg.direction == "outbound"
        ],
    )
    for i, message_id in zip(todo, ids, strict=True):
        results[i] = message_id
    return results


def _conversation_key(msg: CanonicalMessage) -> tuple[str, str]:
    """(column, value): the payload's key, else the channel and both endpoints."""
    if msg.conversation_key is not None:
        return "key", msg.conversation_key
    ends = [msg.channel, msg.customer_endpoint.normalized, msg.contacts[0].normalized]
    return "thread_key", json.dumps(ends, ensure_ascii=False)


def _lookup(db, messages: Sequence[CanonicalMessage]) -> list[_Row]:
    keys, bodies, params = [], [], []
    for m in messages:
        column, key = _conversation_key(m)
        text = dedup.normalize_body(m.body)
        digest = dedup.dedup_hash(text) if text else None
        keys.append((column, key))
        bodies.append(text)
        params.append(
            (
                m.customer_key,
                m.provider_kind,
                m.provider_name,
                m.message_id,
                m.customer_endpoint.normalized,
                key if column == "key" else None,
                key if column == "thread_key" else None,
                digest if m.channel == "email" else None,
                digest if m.channel == "xms" else None,
            )
        )
    found = run(db, LOOKUP, columns(params, 9))
    return [
        _Row(m, *f, normalized_body=text, conversation_key=key)
        for m, f, text, key in zip(messages, found, bodies, keys, strict=True)
    ]


def _customers(db, rows: list[_Row]) -> None:
    new = first(((r.msg.customer_key,), (r.msg.customer_name,)) for r in rows if r.customer is None)
    ids = create(db, "customers", [("key", "text")], [("name", "text")], new)
    for r in rows:
        if r.customer is None:
            r.customer = ids[(r.msg.customer_key,)]


def _providers(db, rows: list[_Row]) -> None:
    def key(r: _Row) -> tuple:
        return (r.customer, r.msg.provider_kind, r.msg.provider_name)

    new = {key(r): () for r in rows if r.provider is None}
    keys = [("customer_id", "bigint"), ("kind", "text"), ("name", "text")]
    ids = create(db, "providers", keys, [], new)
    for r in rows:
        if r.provider is None:
            r.provider = ids[key(r)]


def _not_stored(rows: list[_Row]) -> list[int]:
    """Indexes of the messages neither stored before nor seen earlier in the batch."""
    seen: set[tuple[int, str]] = set()
    todo = []
    for i, r in enumerate(rows):
        key = (r.provider, r.msg.message_id)
        if not r.stored and key not in seen:
            seen.add(key)
            todo.append(i)
    return todo


def _endpoints(db, batch: list[_Row]) -> None:
    """The customer's own address of each message as an ``endpoint_mappings`` row."""
    new = first(
        (
            (r.customer, r.msg.provider_kind, r.msg.customer_endpoint.normalized),
            (r.provider, r.msg.customer_endpoint.raw),
        )
        for r in batch
        if r.endpoint is None
    )
    create(
        db,
        "endpoint_mappings",
        [("customer_id", "bigint"), ("kind", "text"), ("normalized", "text")],
        [("provider_id", "bigint"), ("address", "text"), ("hash", "bigint")],
        {key: (p, raw, dedup.dedup_hash(key[2])) for key, (p, raw) in new.items()},
    )


def _conversations(db, batch: list[_Row]) -> None:
    """Each message's conversation; a new one takes the first message's subject."""
    for column in ("key", "thread_key"):
        new = first(
            ((r.customer, r.conversation_key[1]), (r.msg.subject,))
            for r in batch
            if r.conversation is None and r.conversation_key[0] == column
        )
        keys = [("customer_id", "bigint"), (column, "text")]
        ids = create(db, "conversations", keys, [("topic", "text")], new)
        for r in batch:
            if r.conversation is None and r.conversation_key[0] == column:
                r.conversation = ids[(r.customer, r.conversation_key[1])]


# The customers, providers and conversations the batch found, locked against
# deletion (FOR KEY SHARE, what a foreign key check takes; it does not wait
# for ingestion elsewhere or for the counters) until it commits. An erasure
# that deleted one after the lookup, and has committed, makes the batch retry
# (it then creates them anew); one that has not committed is waited for.
# Locked in this order, each by id, as convdb.privacy.erase locks them.
PIN = """
WITH cu AS (SELECT id FROM customers WHERE id = ANY(%s::bigint[]) ORDER BY id FOR KEY SHARE),
     p AS (SELECT id FROM providers WHERE id = ANY(%s::bigint[]) ORDER BY id FOR KEY SHARE),
     c AS (SELECT id FROM conversations WHERE id = ANY(%s::bigint[]) ORDER BY id FOR KEY SHARE)
SELECT (SELECT count(*) FROM cu), (SELECT count(*) FROM p), (SELECT count(*) FROM c)
"""


def _pin(db, batch: list[_Row]) -> None:
    wanted = [
        sorted({getattr(r, f) for r in batch}) for f in ("customer", "provider", "conversation")
    ]
    found = run(db, PIN, wanted)[0]
    if list(found) != [len(w) for w in wanted]:
        raise TransientError("erased while this batch was writing to them; retried")


def _messages(db, batch: list[_Row], people: list[list[tuple[int, str]]]) -> list[int | None]:
    """Insert the participants and the messages (their new bodies interned
    first); per message its id, or None when a concurrent worker stored the
    same message first."""
    for channel, table in _BODIES.items():
        rows = [r for r in batch if r.msg.channel == channel and r.normalized_body]
        values = first((r.normalized_body, r.msg.body) for r in rows)
        stored = {
            (r.body, dedup.dedup_hash(r.normalized_body), r.body_text)
            for r in rows
            if r.body is not None
        }
        ids = intern(db, table, values, stored)
        for r in rows:
            r.body = ids[r.normalized_body]
    params = []
    for r, group in zip(batch, people, strict=True):
        # The sender: the customer's own contact (first) outbound, the writer inbound.
        sender = group[0][0] if r.msg.direction == "outbound" else group[1][0]
        email, xms = (r.body, None) if r.msg.channel == "email" else (None, r.body)
        m = r.msg
        params.append(
            (
                r.provider,
                m.message_id,
                r.conversation,
                m.direction,
                email,
                xms,
                m.sent_at,
                m.received_at,
                sender,
            )
        )
    participants = sorted(
        {
            (r.conversation, contact, role)
            for r, group in zip(batch, people, strict=True)
            for contact, role in group
        }
    )
    inserted = run(db, MESSAGES, [*columns(participants, 3), *columns(params, 9)])
    by_key = {(p, k): i for i, p, k in inserted}
    return [by_key.get((r.provider, r.msg.message_id)) for r in batch]


# A new attachment row per file, linked to its message, in one statement.
ATTACHMENTS = """
WITH u AS (
    SELECT nextval(pg_get_serial_sequence('attachments', 'id')) AS id, u.*
      FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::bigint[], %s::text[])
           AS u(message_id, url_id, content_type, size, filename)
), a AS (
    INSERT INTO attachments (id, url_id, content_type, size, filename)
    SELECT id, url_id, content_type, size, filename FROM u
)
INSERT INTO message_attachments (message_id, attachment_id) SELECT message_id, id FROM u
"""


def _attachment_urls(db, messages: list[CanonicalMessage]) -> dict[str, int]:
    """The batch's attachment URLs interned (normalized -> id), before the messages: the
    dedup rows of a batch are locked in one order, addresses, bodies, then URLs."""
    raw = first((dedup.normalize_url(f[0]), f[0]) for m in messages for f in m.attachments)
    return intern(db, dedup.ATTACHMENT_URLS, raw) if raw else {}


def _attachments(
    db, messages: list[CanonicalMessage], ids: list[int | None], urls: dict[str, int]
) -> None:
    files = [
        (message_id, *file)
        for m, message_id in zip(messages, ids, strict=True)
        if message_id is not None
        for file in m.attachments
    ]
    if not files:
        return
    normalized = [dedup.normalize_url(f[1]) for f in files]
    message_ids, _, content_types, sizes, filenames = columns(files, 5)
    run(
        db,
        ATTACHMENTS,
        [message_ids, [urls[n] for n in normalized], content_types, sizes, filenames],
    )
