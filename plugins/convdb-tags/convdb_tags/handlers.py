"""The ``conversation.tagged`` queue handler.

Payload::

    {"conversation_id": 42, "tags": ["VIP", " billing "]}

Tag names are trimmed and lowercased; tagging twice is a no-op. With a
``customer`` (``{"key": ...}``: a ``standard`` endpoint always sets its own),
the conversation must be that customer's. The handler runs inside the
worker's transaction, on the database the models are bound to: what it
writes commits with the event's ``done`` or not at all. A payload that cannot
be applied (missing or mistyped field, unknown conversation, another
customer's) raises :class:`convdb.PayloadError`, a permanent failure.

:func:`check_tagged` is the plugin's validator (``Plugin.validators``): what
can be said of a payload without the database, run by ``convdb enqueue`` and
``convdb serve`` before they accept the event, and by the handler again.
"""

from __future__ import annotations

from convdb import PayloadError
from convdb.db import database

MAX_TAG_LENGTH = 100

_INSERT_TAGS = """
INSERT INTO tags (name) SELECT unnest(%s::text[])
ON CONFLICT (name) DO NOTHING
"""

_LINK = """
INSERT INTO conversation_tags (conversation_id, tag_id)
SELECT %s, id FROM tags WHERE name = ANY(%s::text[])
ON CONFLICT DO NOTHING
"""


def tag_names(payload) -> list[str]:
    """The normalized, de-duplicated tag names of a payload, or :class:`PayloadError`."""
    if not isinstance(payload, dict):
        raise PayloadError(f"conversation.tagged: expected an object, got {type(payload).__name__}")
    tags = payload.get("tags")
    if not isinstance(tags, list) or not tags:
        raise PayloadError("conversation.tagged: tags: expected a non-empty list of strings")
    names = []
    for index, tag in enumerate(tags):
        name = tag.strip().lower() if isinstance(tag, str) else ""
        if not name or len(name) > MAX_TAG_LENGTH:
            raise PayloadError(
                f"conversation.tagged: tags[{index}]: expected a non-empty string of at most "
                f"{MAX_TAG_LENGTH} characters, got {tag!r}"
            )
        names.append(name)
    return sorted(set(names))


def check_tagged(payload) -> None:
    """The validator of ``conversation.tagged``: :class:`PayloadError` naming the bad field."""
    tag_names(payload)
    conversation_id = payload.get("conversation_id")
    if not isinstance(conversation_id, int) or isinstance(conversation_id, bool):
        raise PayloadError("conversation_id: expected an integer")
    if not -(2**63) <= conversation_id < 2**63:
        raise PayloadError("conversation_id: out of range")
    customer = payload.get("customer")
    if customer is not None and not (
        isinstance(customer, dict) and isinstance(customer.get("key"), str)
    ):
        raise PayloadError('customer: expected {"key": "..."}')


def handle_tagged(event) -> int:
    """Tag the conversation of ``event.payload``; return how many tags were newly attached."""
    payload = event.payload
    check_tagged(payload)
    names = tag_names(payload)
    conversation_id = payload["conversation_id"]
    owner = database.execute_sql(
        "SELECT cu.key FROM conversations c JOIN customers cu ON cu.id = c.customer_id "
        "WHERE c.id = %s",
        (conversation_id,),
    ).fetchone()
    if owner is None:
        raise PayloadError(f"conversation.tagged: conversation {conversation_id} does not exist")
    customer = payload.get("customer")
    if customer is not None and customer["key"] != owner[0]:
        raise PayloadError(
            f"conversation.tagged: conversation {conversation_id} is not {customer['key']!r}'s"
        )
    database.execute_sql(_INSERT_TAGS, (names,))
    cursor = database.execute_sql(_LINK, (conversation_id, names))
    return cursor.rowcount
