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
import json
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
    attachments: tuple[tuple[str, str | None], ...]

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
    files: dict[str, str | None] = {}
    for i, item in enumerate(attachments):
        item = _object(item, f"attachments[{i}]")
        url = _text(_get(item, "url", f"attachments[{i}].url"), f"attachments[{i}].url")
        files.setdefault(url, _opt_text(item, "content_type", f"attachments[{i}].content_type"))
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
        attachments=tuple(files.items()),
    )


# --- writing ------------------------------------------------------------------------


def _one(db, sql: str, params) -> tuple | None:
    return db.execute_sql(sql, params).fetchone()


def _find_or_create(db, select: str, insert: str, params: dict) -> int:
    """Id of the row ``select`` finds, else of the row ``insert`` creates.

    ``insert`` ends in ``ON CONFLICT ... DO NOTHING RETURNING id``: when a
    concurrent transaction created the row first, it returns nothing (after
    waiting for that transaction) and ``select`` finds the row in a fresh
    snapshot. Existing rows are only read, never locked.
    """
    for sql in (select, insert, select):
        row = _one(db, sql, params)
        if row is not None:
            return row[0]
    raise RuntimeError(f"row vanished while finding or creating it: {params!r}")


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
    row = _one(
        db, f"SELECT id, {column} FROM {table} WHERE hash = %s", (dedup.dedup_hash(normalized),)
    )
    if row is not None and row[1] == normalized:
        return row[0]
    return intern(db, raw)  # creates it, or reports a 64-bit collision


def _customer(db, msg: CanonicalMessage) -> int:
    return _find_or_create(
        db,
        "SELECT id FROM customers WHERE key = %(key)s",
        "INSERT INTO customers (key, name) VALUES (%(key)s, %(name)s) "
        "ON CONFLICT (key) DO NOTHING RETURNING id",
        {"key": msg.customer_key, "name": msg.customer_name},
    )


def _provider(db, customer_id: int, msg: CanonicalMessage) -> int:
    return _find_or_create(
        db,
        "SELECT id FROM providers WHERE customer_id = %(c)s AND kind = %(k)s AND name = %(n)s",
        "INSERT INTO providers (customer_id, kind, name) VALUES (%(c)s, %(k)s, %(n)s) "
        "ON CONFLICT (customer_id, kind, name) DO NOTHING RETURNING id",
        {"c": customer_id, "k": msg.provider_kind, "n": msg.provider_name},
    )


def _contact(db, customer_id: int, kind: str, address: Address, name: str | None) -> int:
    what = "email_address" if kind == "email" else "phone_number"
    address_id = _intern(db, what, address.raw, address.normalized)
    column = f"{what}_id"
    select = (
        "SELECT ca.contact_id, c.display_name FROM contact_addresses ca "
        "JOIN contacts c ON c.id = ca.contact_id "
        f"WHERE ca.customer_id = %(c)s AND ca.{column} = %(a)s"
    )
    row = _one(db, select, {"c": customer_id, "a": address_id})
    if row is not None:
        if row[1] is None and name:  # a name learnt from a later message
            db.execute_sql("UPDATE contacts SET display_name = %s WHERE id = %s", (name, row[0]))
        return row[0]
    (contact_id,) = _one(
        db,
        "INSERT INTO contacts (customer_id, display_name) VALUES (%s, %s) RETURNING id",
        (customer_id, name),
    )
    linked = _one(
        db,
        f"INSERT INTO contact_addresses (customer_id, contact_id, {column}) "
        f"VALUES (%(c)s, %(id)s, %(a)s) ON CONFLICT (customer_id, {column}) DO NOTHING "
        f"RETURNING contact_id",
        {"c": customer_id, "id": contact_id, "a": address_id},
    )
    if linked is not None:
        return contact_id
    # A concurrent worker linked this address first: use its contact.
    db.execute_sql("DELETE FROM contacts WHERE id = %s", (contact_id,))
    return _one(db, select, {"c": customer_id, "a": address_id})[0]


def _endpoint(db, customer_id: int, provider_id: int, msg: CanonicalMessage) -> None:
    own = msg.customer_endpoint
    db.execute_sql(
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


def _conversation(db, customer_id: int, msg: CanonicalMessage) -> int:
    params = {"c": customer_id, "topic": msg.subject}
    if msg.conversation_key is not None:
        column, params["k"] = "key", msg.conversation_key
    else:
        column = "thread_key"
        ends = [msg.channel, msg.customer_endpoint.normalized, msg.contacts[0].normalized]
        params["k"] = json.dumps(ends, ensure_ascii=False)
    return _find_or_create(
        db,
        f"SELECT id FROM conversations WHERE customer_id = %(c)s AND {column} = %(k)s",
        f"INSERT INTO conversations (customer_id, topic, {column}) VALUES (%(c)s, %(topic)s, "
        f"%(k)s) ON CONFLICT (customer_id, {column}) DO NOTHING RETURNING id",
        params,
    )


def ingest_message(db: peewee.Database, msg: CanonicalMessage) -> int | None:
    """Write ``msg``; returns the new message's id, or None if it was already stored.

    Runs in the caller's transaction (wrap it in ``db.atomic()``).
    """
    customer_id = _customer(db, msg)
    provider_id = _provider(db, customer_id, msg)
    existing = _one(
        db,
        "SELECT id FROM messages WHERE provider_id = %s AND provider_message_id = %s",
        (provider_id, msg.message_id),
    )
    if existing is not None:
        return None
    _endpoint(db, customer_id, provider_id, msg)
    conversation_id = _conversation(db, customer_id, msg)
    kind, us = msg.provider_kind, msg.customer_endpoint
    people = [(_contact(db, customer_id, kind, us, us.name or msg.customer_name), "customer")]
    people += [(_contact(db, customer_id, kind, a, a.name), "contact") for a in msg.contacts]
    db.execute_sql(
        "INSERT INTO conversation_participants (conversation_id, contact_id, role) VALUES "
        + ", ".join(["(%s, %s, %s)"] * len(people))
        + " ON CONFLICT DO NOTHING",
        [v for contact_id, role in people for v in (conversation_id, contact_id, role)],
    )
    body_column, body_id = "email_body_id", None
    if msg.channel == "xms":
        body_column = "xms_body_id"
    normalized_body = dedup.normalize_body(msg.body)
    if normalized_body:
        body_id = _intern(db, body_column[:-3], msg.body, normalized_body)
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
    for url, content_type in msg.attachments:
        url_id = _intern(db, "url", url, dedup.normalize_url(url))
        db.execute_sql(
            "WITH a AS (INSERT INTO attachments (url_id, content_type) VALUES (%s, %s) "
            "RETURNING id) INSERT INTO message_attachments (message_id, attachment_id) "
            "SELECT %s, id FROM a",
            (url_id, content_type, message_id),
        )
    return message_id


def _handle(event) -> int | None:
    from .db import database

    return ingest_message(database, parse_message(event.payload, event.event_type))


def handle_message_received(event) -> int | None:
    """Queue handler for ``message.received``: validate, then ingest ``event.payload``."""
    return _handle(event)


def handle_message_sent(event) -> int | None:
    """Queue handler for ``message.sent``: validate, then ingest ``event.payload``."""
    return _handle(event)
