"""The ``conversation.tagged`` queue handler.

Payload::

    {"conversation_id": 42, "tags": ["VIP", " billing "]}

Tag names are trimmed and lowercased; tagging twice is a no-op. The handler
runs inside the worker's transaction, on the database the models are bound
to: what it writes commits with the event's ``done`` or not at all. A payload
that cannot be applied (missing or mistyped field, unknown conversation)
raises :class:`convdb.PayloadError`, a permanent failure.
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


def handle_tagged(event) -> int:
    """Tag the conversation of ``event.payload``; return how many tags were newly attached."""
    payload = event.payload
    names = tag_names(payload)
    conversation_id = payload.get("conversation_id")
    if not isinstance(conversation_id, int) or isinstance(conversation_id, bool):
        raise PayloadError("conversation.tagged: conversation_id: expected an integer")
    exists = database.execute_sql(
        "SELECT 1 FROM conversations WHERE id = %s", (conversation_id,)
    ).fetchone()
    if exists is None:
        raise PayloadError(f"conversation.tagged: conversation {conversation_id} does not exist")
    database.execute_sql(_INSERT_TAGS, (names,))
    cursor = database.execute_sql(_LINK, (conversation_id, names))
    return cursor.rowcount
