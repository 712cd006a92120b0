"""Ingestion of the canonical ``message.received`` / ``message.sent`` events.

The payload format is in SPEC.md ("The canonical message event") and the
README. :func:`parse_message` validates a payload and raises
:class:`~convdb.exceptions.PayloadError` naming the first bad field;
:func:`ingest_message` writes it; :func:`handle_message_received` and
:func:`handle_message_sent` are the queue handlers (one argument, the
``InboundEvent``; they run inside the worker's transaction)::

    from convdb.ingest import ingest_message, parse_message
    with db.atomic():
        message_id = ingest_message(db, parse_message(payload))

What is written, each row found first by its natural key and created only when
missing (``INSERT ... ON CONFLICT``, so concurrent workers never duplicate it):

- the customer by ``customer.key``; its provider by (kind, name);
- the customer's own address as an ``endpoint_mappings`` row, and as a contact
  (role ``customer`` among the participants), so the conversation lists both
  sides; the other side's addresses as contacts (role ``contact``). A contact
  is found per customer by its normalized address (``contact_addresses``);
- the conversation by ``conversation_key``, else by (channel, customer
  endpoint, first contact endpoint), email apart from SMS/MMS;
- the body in ``email_bodies`` or ``xms_bodies``, attachment URLs in
  ``attachment_urls``, addresses in ``email_addresses`` / ``phone_numbers``;
- the message, unique on (provider, ``message_id``): a redelivery writes nothing.

The first ``to`` address is the customer's endpoint for an inbound message;
further ``to`` addresses (e.g. other recipients of an email) are contacts.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import weakref
from dataclasses import dataclass

import peewee

from . import dedup
from .exceptions import PayloadError

__all__ = [
    "EVENT_TYPES",
    "Address",
    "CanonicalMessage",
    "handle_message_received",
    "handle_message_sent",
    "ingest_message",
    "parse_message",
]

EVENT_TYPES = ("message.received", "message.sent")
MESSAGE_KINDS = ("email", "sms", "mms")
MAX_KEY = 500  # keys and addresses go into unique indexes: keep them well under 2.7 KB


@dataclass(frozen=True)
class Address:
    raw: str
    normalized: str
    name: str | None = None


@dataclass(frozen=True)
class CanonicalMessage:
    """A validated canonical payload; timestamps are aware, addresses normalized."""

    customer_key: str
    customer_name: str
    provider_kind: str
    provider_name: str
    direction: str
    message_id: str
    sender: Address
    recipients: tuple[Address, ...]
    subject: str | None
    body: str
    sent_at: dt.datetime
    received_at: dt.datetime | None
    conversation_key: str | None
    attachments: tuple[tuple[str, str | None, int | None], ...]  # url, content type, bytes

    @property
    def channel(self) -> str:
        return "email" if self.provider_kind == "email" else "xms"

    @property
    def customer_endpoint(self) -> Address:
        return self.recipients[0] if self.direction == "inbound" else self.sender

    @property
    def contacts(self) -> tuple[Address, ...]:
        if self.direction == "inbound":
            return (self.sender, *self.recipients[1:])
        return self.recipients


# --- validation ---------------------------------------------------------------------


def _get(obj: dict, field: str, path: str, *, required: bool = True):
    if field not in obj or obj[field] is None:
        if required:
            raise PayloadError(f"{path}: missing (required)")
        return None
    return obj[field]


def _object(value, path: str) -> dict:
    if not isinstance(value, dict):
        raise PayloadError(f"{path}: expected an object, got {type(value).__name__}")
    return value


def _text(value, path: str, *, max_len: int | None = MAX_KEY, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise PayloadError(f"{path}: expected a string, got {type(value).__name__}")
    if "\x00" in value:
        raise PayloadError(f"{path}: contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise PayloadError(f"{path}: contains a lone surrogate") from None
    if not empty and not value.strip():
        raise PayloadError(f"{path}: must not be empty")
    if max_len is not None and len(value) > max_len:
        raise PayloadError(f"{path}: longer than {max_len} characters")
    return value


def _opt_text(obj: dict, field: str, path: str, **kwargs) -> str | None:
    value = _get(obj, field, path, required=False)
    return None if value is None else _text(value, path, **kwargs)


def _size(obj: dict, path: str) -> int | None:
    """An attachment's optional byte size: a non-negative integer."""
    value = obj.get("size")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
        raise PayloadError(f"{path}: expected a non-negative integer (bytes)")
    return value


def _timestamp(value, path: str) -> dt.datetime:
    text = _text(value, path)
    try:
        parsed = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise PayloadError(
            f"{path}: not an ISO 8601 timestamp: {text!r} (e.g. 2025-11-05T10:00:00+02:00)"
        ) from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise PayloadError(f"{path}: no time zone in {text!r}; give an offset such as Z or +02:00")
    return parsed.astimezone(dt.UTC)


def _address(value, path: str, kind: str) -> Address:
    obj = _object(value, path)
    raw = _text(_get(obj, "address", f"{path}.address"), f"{path}.address", max_len=320)
    name = _opt_text(obj, "name", f"{path}.name", max_len=None, empty=True)
    try:
        if kind == "email":
            local, at, domain = raw.strip().rpartition("@")
            if not at or not local or not domain:
                raise ValueError(f"not an email address: {raw!r}")
            normalized = dedup.normalize_email(raw)
        else:
            normalized = dedup.normalize_phone(raw)
    except ValueError as exc:
        raise PayloadError(f"{path}.address: {exc}") from None
    return Address(raw=raw, normalized=normalized, name=name or None)


def parse_message(payload, event_type: str | None = None) -> CanonicalMessage:
    """Validate a canonical payload; :class:`PayloadError` names the first bad field.

    ``direction`` may be left out when ``event_type`` is given: it is then
    ``inbound`` for ``message.received`` and ``outbound`` for ``message.sent``.
    Unknown fields are ignored.
    """
    obj = _object(payload, "payload")
    customer = _object(_get(obj, "customer", "customer"), "customer")
    customer_key = _text(_get(customer, "key", "customer.key"), "customer.key")
    customer_name = _opt_text(customer, "name", "customer.name", max_len=None) or customer_key
    provider = _object(_get(obj, "provider", "provider"), "provider")
    kind = _text(_get(provider, "kind", "provider.kind"), "provider.kind")
    if kind not in MESSAGE_KINDS:
        raise PayloadError(f"provider.kind: {kind!r} is not one of {', '.join(MESSAGE_KINDS)}")
    provider_name = _text(_get(provider, "name", "provider.name"), "provider.name")
    default_direction = {"message.received": "inbound", "message.sent": "outbound"}
    direction = _get(obj, "direction", "direction", required=event_type not in default_direction)
    direction = default_direction[event_type] if direction is None else direction
    if direction not in ("inbound", "outbound"):
        raise PayloadError(f"direction: {direction!r} is not 'inbound' or 'outbound'")
    message_id = _get(obj, "message_id", "message_id")
    if isinstance(message_id, int) and not isinstance(message_id, bool):
        message_id = str(message_id)  # some providers use numeric ids
    message_id = _text(message_id, "message_id")
    sender = _address(_get(obj, "from", "from"), "from", kind)
    to = _get(obj, "to", "to")
    if not isinstance(to, list) or not to:
        raise PayloadError("to: expected a non-empty list of addresses")
    recipients = tuple(_address(item, f"to[{i}]", kind) for i, item in enumerate(to))
    body = _text(_get(obj, "body", "body"), "body", max_len=None, empty=True)
    attachments = _get(obj, "attachments", "attachments", required=False) or []
    if not isinstance(attachments, list):
        raise PayloadError("attachments: expected a list")
    files: dict[str, tuple[str | None, int | None]] = {}
    for i, item in enumerate(attachments):
        item = _object(item, f"attachments[{i}]")
        url = _text(_get(item, "url", f"attachments[{i}].url"), f"attachments[{i}].url")
        content_type = _opt_text(item, "content_type", f"attachments[{i}].content_type")
        files.setdefault(url, (content_type, _size(item, f"attachments[{i}].size")))
    received = _get(obj, "received_at", "received_at", required=False)
    return CanonicalMessage(
        customer_key=customer_key,
        customer_name=customer_name,
        provider_kind=kind,
        provider_name=provider_name,
        direction=direction,
        message_id=message_id,
        sender=sender,
        recipients=recipients,
        subject=_opt_text(obj, "subject", "subject", max_len=None, empty=True) or None,
        body=body,
        sent_at=_timestamp(_get(obj, "sent_at", "sent_at"), "sent_at"),
        received_at=None if received is None else _timestamp(received, "received_at"),
        conversation_key=_opt_text(obj, "conversation_key", "conversation_key"),
        attachments=tuple((url, *info) for url, info in files.items()),
    )


# --- writing ------------------------------------------------------------------------

# Ingestion runs about fifteen small statements per message, and planning them
# costs more than running them: each is PREPAREd once per connection and
# EXECUTEd after that. Prepared statements survive a rolled-back transaction;
# the registry is keyed by the connection and its server process id, so a
# reconnect prepares again.
_PREPARED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _run(db, sql: str, params: tuple = ()):
    """Execute ``sql`` (``%s`` placeholders) as a prepared statement; the cursor."""
    conn = db.connection()
    names = _PREPARED.get(conn)
    if names is None or names[0] != conn.info.backend_pid:
        names = _PREPARED[conn] = (conn.info.backend_pid, set())
    name = "convdb_ingest_" + hashlib.md5(sql.encode()).hexdigest()[:16]
    if name not in names[1]:
        parts = sql.split("%s")
        numbered = "".join(f"{part}${i}" for i, part in enumerate(parts[:-1], 1)) + parts[-1]
        db.execute_sql(f"PREPARE {name} AS {numbered}")
        names[1].add(name)
    if not params:
        return db.execute_sql(f"EXECUTE {name}")
    return db.execute_sql(f"EXECUTE {name} ({', '.join(['%s'] * len(params))})", params)


def _one(db, sql: str, params: tuple) -> tuple | None:
    return _run(db, sql, params).fetchone()


def _find_or_create(db, select: str, key: tuple, insert: str, values: tuple) -> int:
    """Id of the row ``select`` finds by ``key``, else of the row ``insert`` creates.

    ``insert`` ends in ``ON CONFLICT ... DO NOTHING RETURNING id``: when a
    concurrent transaction created the row first, it returns nothing (after
    waiting for that transaction) and ``select`` finds the row in a fresh
    snapshot. Existing rows are only read, never locked.
    """
    for sql, params in ((select, key), (insert, values), (select, key)):
        row = _one(db, sql, params)
        if row is not None:
            return row[0]
    raise RuntimeError(f"row vanished while finding or creating it: {key!r}")


_DEDUP = {
    # table, normalized column, intern helper
    "email_address": ("email_addresses", "lowered", dedup.intern_email_address),
    "phone_number": ("phone_numbers", "e164", dedup.intern_phone_number),
    "email_body": ("email_bodies", "normalized", dedup.intern_email_body),
    "xms_body": ("xms_bodies", "normalized", dedup.intern_xms_body),
    "url": ("attachment_urls", "normalized", dedup.intern_attachment_url),
}


def _intern(db, what: str, raw: str, normalized: str) -> int:
    # Read first: interning an existing value through the helper's upsert would
    # write and lock its row until commit, serializing workers on common values.
    table, column, intern = _DEDUP[what]
    sql = f"SELECT id, {column} FROM {table} WHERE hash = %s"
    row = _one(db, sql, (dedup.dedup_hash(normalized),))
    if row is not None and row[1] == normalized:
        return row[0]
    return intern(db, raw)  # creates it, or reports a 64-bit collision


def _customer(db, msg: CanonicalMessage) -> int:
    return _find_or_create(
        db,
        "SELECT id FROM customers WHERE key = %s",
        (msg.customer_key,),
        "INSERT INTO customers (key, name) VALUES (%s, %s) "
        "ON CONFLICT (key) DO NOTHING RETURNING id",
        (msg.customer_key, msg.customer_name),
    )


def _provider(db, customer_id: int, msg: CanonicalMessage) -> int:
    key = (customer_id, msg.provider_kind, msg.provider_name)
    return _find_or_create(
        db,
        "SELECT id FROM providers WHERE customer_id = %s AND kind = %s AND name = %s",
        key,
        "INSERT INTO providers (customer_id, kind, name) VALUES (%s, %s, %s) "
        "ON CONFLICT (customer_id, kind, name) DO NOTHING RETURNING id",
        key,
    )


def _address_table(kind: str) -> tuple[str, str, str]:
    """(dedup table, its normalized column, the link column in contact_addresses)."""
    what = "email_address" if kind == "email" else "phone_number"
    return _DEDUP[what][0], _DEDUP[what][1], f"{what}_id"


def _known_contacts(db, customer_id: int, kind: str, addresses) -> dict[int, tuple]:
    """Every address already stored, and its contact if any, by hash: one round trip."""
    table, column, link = _address_table(kind)
    rows = _run(
        db,
        f"SELECT a.hash, a.id, a.{column}, ca.contact_id, c.display_name FROM {table} a "
        f"LEFT JOIN contact_addresses ca ON ca.{link} = a.id AND ca.customer_id = %s "
        f"LEFT JOIN contacts c ON c.id = ca.contact_id WHERE a.hash = ANY(%s)",
        (customer_id, sorted({dedup.dedup_hash(a.normalized) for a in addresses})),
    ).fetchall()
    return {row[0]: row[1:] for row in rows}


def _contact(db, customer_id: int, kind: str, address: Address, name, known: dict) -> int:
    """The contact of ``address`` (created with ``name`` if new); ``known``: see above."""
    link = _address_table(kind)[2]
    row = known.get(dedup.dedup_hash(address.normalized))
    if row is not None and row[1] == address.normalized and row[2] is not None:
        if row[3] is None and name:  # a name learnt from a later message
            _run(db, "UPDATE contacts SET display_name = %s WHERE id = %s", (name, row[2]))
        return row[2]
    if row is not None and row[1] == address.normalized:
        address_id = row[0]
    else:
        address_id = _intern(db, link[:-3], address.raw, address.normalized)
    (contact_id,) = _one(
        db,
        "INSERT INTO contacts (customer_id, display_name) VALUES (%s, %s) RETURNING id",
        (customer_id, name),
    )
    linked = _one(
        db,
        f"INSERT INTO contact_addresses (customer_id, contact_id, {link}) VALUES (%s, %s, %s) "
        f"ON CONFLICT (customer_id, {link}) DO NOTHING RETURNING contact_id",
        (customer_id, contact_id, address_id),
    )
    if linked is not None:
        return contact_id
    # A concurrent worker linked this address first: use its contact.
    _run(db, "DELETE FROM contacts WHERE id = %s", (contact_id,))
    existing = f"SELECT contact_id FROM contact_addresses WHERE customer_id = %s AND {link} = %s"
    return _one(db, existing, (customer_id, address_id))[0]


def _endpoint(db, customer_id: int, provider_id: int, msg: CanonicalMessage) -> None:
    own = msg.customer_endpoint
    _run(
        db,
        "INSERT INTO endpoint_mappings (customer_id, provider_id, kind, address, normalized, hash) "
        "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (customer_id, kind, normalized) DO NOTHING",
        (
            customer_id,
            provider_id,
            msg.provider_kind,
            own.raw,
            own.normalized,
            dedup.dedup_hash(own.normalized),
        ),
    )


def _conversation_key(msg: CanonicalMessage) -> tuple[str, str]:
    """(column, value): the payload's key, else the channel and both endpoints."""
    if msg.conversation_key is not None:
        return "key", msg.conversation_key
    ends = [msg.channel, msg.customer_endpoint.normalized, msg.contacts[0].normalized]
    return "thread_key", json.dumps(ends, ensure_ascii=False)


def _conversation(db, customer_id: int, msg: CanonicalMessage) -> int:
    column, key = _conversation_key(msg)
    return _find_or_create(
        db,
        f"SELECT id FROM conversations WHERE customer_id = %s AND {column} = %s",
        (customer_id, key),
        f"INSERT INTO conversations (customer_id, {column}, topic) VALUES (%s, %s, %s) "
        f"ON CONFLICT (customer_id, {column}) DO NOTHING RETURNING id",
        (customer_id, key, msg.subject),
    )


def ingest_message(db: peewee.Database, msg: CanonicalMessage) -> int | None:
    """Write ``msg``; returns the new message's id, or None if it was already stored.

    Runs in the caller's transaction (wrap it in ``db.atomic()``).
    """
    body_table = "email_bodies" if msg.channel == "email" else "xms_bodies"
    normalized_body = dedup.normalize_body(msg.body)
    body_hash = dedup.dedup_hash(normalized_body) if normalized_body else None
    column, key = _conversation_key(msg)
    # What already exists, in one round trip: the customer, its provider, a
    # stored copy of this message, the conversation and the body.
    known = (
        _one(
            db,
            "SELECT c.id, p.id, m.id, cv.id, b.id, b.normalized FROM customers c "
            "LEFT JOIN providers p ON p.customer_id = c.id AND p.kind = %s AND p.name = %s "
            "LEFT JOIN messages m ON m.provider_id = p.id AND m.provider_message_id = %s "
            f"LEFT JOIN conversations cv ON cv.customer_id = c.id AND cv.{column} = %s "
            f"LEFT JOIN {body_table} b ON b.hash = %s "
            "WHERE c.key = %s",
            (
                msg.provider_kind,
                msg.provider_name,
                msg.message_id,
                key,
                body_hash,
                msg.customer_key,
            ),
        )
        or (None,) * 6
    )
    customer_id, provider_id, stored, conversation_id, body_id, body_text = known
    if stored is not None:
        return None  # delivered before
    customer_id = customer_id or _customer(db, msg)
    provider_id = provider_id or _provider(db, customer_id, msg)
    _endpoint(db, customer_id, provider_id, msg)
    conversation_id = conversation_id or _conversation(db, customer_id, msg)
    kind, us = msg.provider_kind, msg.customer_endpoint
    found = _known_contacts(db, customer_id, kind, (us, *msg.contacts))
    people = [
        (_contact(db, customer_id, kind, us, us.name or msg.customer_name, found), "customer")
    ]
    people += [(_contact(db, customer_id, kind, a, a.name, found), "contact") for a in msg.contacts]
    _run(
        db,
        "INSERT INTO conversation_participants (conversation_id, contact_id, role) VALUES "
        + ", ".join(["(%s, %s, %s)"] * len(people))
        + " ON CONFLICT DO NOTHING",
        tuple(v for contact_id, role in people for v in (conversation_id, contact_id, role)),
    )
    body_column = "email_body_id" if msg.channel == "email" else "xms_body_id"
    if normalized_body and body_text != normalized_body:
        body_id = _intern(db, body_column[:-3], msg.body, normalized_body)
    elif not normalized_body:
        body_id = None
    row = _one(
        db,
        f"INSERT INTO messages (conversation_id, provider_id, provider_message_id, direction, "
        f"{body_column}, sent_at, received_at) VALUES (%s, %s, %s, %s, %s, %s, %s) "
        f"ON CONFLICT (provider_id, provider_message_id) DO NOTHING RETURNING id",
        (
            conversation_id,
            provider_id,
            msg.message_id,
            msg.direction,
            body_id,
            msg.sent_at,
            msg.received_at,
        ),
    )
    if row is None:
        return None  # a concurrent worker stored the same message first
    message_id = row[0]
    for url, content_type, size in msg.attachments:
        url_id = _intern(db, "url", url, dedup.normalize_url(url))
        _run(
            db,
            "WITH a AS (INSERT INTO attachments (url_id, content_type, size) "
            "VALUES (%s, %s, %s) RETURNING id) "
            "INSERT INTO message_attachments (message_id, attachment_id) SELECT %s, id FROM a",
            (url_id, content_type, size, message_id),
        )
    return message_id


def _handle(event) -> int | None:
    from .db import database
    from .ingest_batch import refresh_plans

    refresh_plans(database, 1)  # cached plans made on small tables go stale as they grow
    return ingest_message(database, parse_message(event.payload, event.event_type))


def handle_message_received(event) -> int | None:
    """Queue handler for ``message.received``: validate, then ingest ``event.payload``."""
    return _handle(event)


def handle_message_sent(event) -> int | None:
    """Queue handler for ``message.sent``: validate, then ingest ``event.payload``."""
    return _handle(event)
