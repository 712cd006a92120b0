"""What the console's endpoint, customer and conversation pages read (read connection only).

Every list is a keyset page: the caller passes the cursor of the last row it
showed and gets at most ``limit`` rows after it, through an index, so a
page costs the same on the first page and the thousandth:

- endpoints by id (primary key), with their activity from the receiver's
  counters (:data:`convdb.serve.deliveries.ENDPOINT_ACTIVITY`);
- customers by id;
- a customer's inbox by ``(last_message_at DESC NULLS LAST, id DESC)``
  (``conversations_inbox_idx``); conversations without messages come last;
- a conversation's messages by ``(sent_at DESC, id DESC)``
  (``messages_conversation_sent_at_idx``), read from the
  ``conversation_messages`` view: its columns are :data:`MESSAGE_COLUMNS`.

Delivery status (``status``, ``status_at`` in the view) is not in the
schema yet: adding it is two names in :data:`MESSAGE_COLUMNS` and one cell
in ``conversation.html``. Search is :func:`convdb.search.search_on`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from ..serve.deliveries import ENDPOINT_ACTIVITY
from ..serve.endpoints import PATH_PREFIX

#: The columns of ``conversation_messages`` the conversation page shows.
MESSAGE_COLUMNS = (
    "message_id",
    "direction",
    "provider_id",
    "sent_at",
    "received_at",
    "body_text",
    "attachments_count",
)

ENDPOINTS_PAGE = """
SELECT e.id, c.id, c.key, c.name, p.name, p.kind, e.adapter, e.token_hint, e.created_at
  FROM webhook_endpoints e
  JOIN providers p ON p.id = e.provider_id
  JOIN customers c ON c.id = p.customer_id
 WHERE e.id > %(after)s
 ORDER BY e.id
 LIMIT %(limit)s
"""

CUSTOMERS_PAGE = """
SELECT c.id, c.key, c.name, c.created_at,
       (SELECT v.last_message_at FROM conversations v
         WHERE v.customer_id = c.id
         ORDER BY v.last_message_at DESC NULLS LAST, v.id DESC LIMIT 1)
  FROM customers c
 WHERE c.id > %(after)s
 ORDER BY c.id
 LIMIT %(limit)s
"""

CUSTOMER = "SELECT id, key, name, created_at FROM customers WHERE id = %(id)s"

# The inbox row: the conversation, up to three of its contacts, and the
# start of its latest message.
_INBOX_ROW = """
SELECT v.id, v.topic, v.last_message_at, v.message_count, v.participant_count,
       ARRAY(SELECT coalesce(ct.display_name, ea.raw, pn.raw, '#' || ct.id)
               FROM conversation_participants cp
               JOIN contacts ct ON ct.id = cp.contact_id
               LEFT JOIN LATERAL (SELECT email_address_id, phone_number_id
                                    FROM contact_addresses ca
                                   WHERE ca.contact_id = ct.id
                                   ORDER BY ca.id LIMIT 1) ca ON true
               LEFT JOIN email_addresses ea ON ea.id = ca.email_address_id
               LEFT JOIN phone_numbers pn ON pn.id = ca.phone_number_id
              WHERE cp.conversation_id = v.id AND cp.role = 'contact'
              ORDER BY ct.id LIMIT 3),
       (SELECT left(m.body_text, 160) FROM conversation_messages m
         WHERE m.conversation_id = v.id
         ORDER BY m.sent_at DESC, m.message_id DESC LIMIT 1)
  FROM conversations v
"""

INBOX_ACTIVE = (
    _INBOX_ROW
    + """
 WHERE v.customer_id = %(customer)s AND v.last_message_at IS NOT NULL
   AND (%(at)s::timestamptz IS NULL OR (v.last_message_at, v.id) < (%(at)s, %(id)s))
 ORDER BY v.last_message_at DESC NULLS LAST, v.id DESC
 LIMIT %(limit)s
"""
)

INBOX_QUIET = (
    _INBOX_ROW
    + """
 WHERE v.customer_id = %(customer)s AND v.last_message_at IS NULL
   AND (%(id)s::bigint IS NULL OR v.id < %(id)s)
 ORDER BY v.last_message_at DESC NULLS LAST, v.id DESC
 LIMIT %(limit)s
"""
)

CONVERSATION = """
SELECT v.id, v.customer_id, cu.name, v.topic, v.created_at, v.last_message_at,
       v.message_count, v.participant_count
  FROM conversations v JOIN customers cu ON cu.id = v.customer_id
 WHERE v.id = %(id)s
"""

PARTICIPANTS = """
SELECT cp.role, ct.id, ct.display_name,
       ARRAY(SELECT coalesce(ea.raw, pn.raw) FROM contact_addresses ca
               LEFT JOIN email_addresses ea ON ea.id = ca.email_address_id
               LEFT JOIN phone_numbers pn ON pn.id = ca.phone_number_id
              WHERE ca.contact_id = ct.id ORDER BY ca.id LIMIT 5)
  FROM conversation_participants cp JOIN contacts ct ON ct.id = cp.contact_id
 WHERE cp.conversation_id = %(id)s
 ORDER BY cp.role, ct.id
 LIMIT 50
"""

MESSAGES_PAGE = f"""
SELECT {", ".join("m." + c for c in MESSAGE_COLUMNS)}, p.name, p.kind
  FROM conversation_messages m JOIN providers p ON p.id = m.provider_id
 WHERE m.conversation_id = %(conversation)s
   AND (%(at)s::timestamptz IS NULL OR (m.sent_at, m.message_id) < (%(at)s, %(id)s))
 ORDER BY m.sent_at DESC, m.message_id DESC
 LIMIT %(limit)s
"""

ATTACHMENTS = """
SELECT ma.message_id, a.id, a.filename, a.content_type, a.size, u.raw
  FROM message_attachments ma
  JOIN attachments a ON a.id = ma.attachment_id
  JOIN attachment_urls u ON u.id = a.url_id
 WHERE ma.message_id = ANY(%(ids)s::bigint[])
 ORDER BY ma.message_id, a.id
"""


@dataclass(frozen=True)
class Cursor:
    """A keyset position: a timestamp (or None: the rows without one) and an id."""

    at: dt.datetime | None
    id: int

    def text(self) -> str:
        return f"{'' if self.at is None else int(self.at.timestamp() * 1_000_000)}.{self.id}"

    @classmethod
    def parse(cls, text: str | None) -> Cursor | None:
        """From :meth:`text`; None for no cursor; ValueError for anything else."""
        if not text:
            return None
        if len(text) > 60:
            raise ValueError("cursor too long")
        micros, dot, ident = text.partition(".")
        if not dot or not ident.isdigit() or (micros and not micros.lstrip("-").isdigit()):
            raise ValueError("not a cursor")
        ident_value = int(ident)
        if ident_value >= 2**63:
            raise ValueError("not a cursor")
        at = None
        if micros:
            try:
                at = dt.datetime.fromtimestamp(int(micros) / 1_000_000, dt.UTC)
            except (OverflowError, OSError, ValueError):
                raise ValueError("not a cursor") from None
        return cls(at, ident_value)


def _rows(conn, sql: str, params: dict) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def endpoints_page(conn, after: int, limit: int) -> list[dict[str, Any]]:
    rows = _rows(conn, ENDPOINTS_PAGE, {"after": after, "limit": limit})
    activity = {r[0]: r[1:] for r in _rows(conn, ENDPOINT_ACTIVITY, {"ids": [r[0] for r in rows]})}
    keys = ("id", "customer_id", "customer_key", "customer_name", "provider", "kind")
    return [
        {
            **dict(zip(keys, r[:6], strict=True)),
            "adapter": r[6],
            "path_hint": f"{PATH_PREFIX}{r[7]}...",
            "created_at": r[8],
            "last_delivery_at": activity.get(r[0], (None, 0))[0],
            "deliveries_day": activity.get(r[0], (None, 0))[1],
        }
        for r in rows
    ]


def customers_page(conn, after: int, limit: int) -> list[dict[str, Any]]:
    keys = ("id", "key", "name", "created_at", "last_message_at")
    return [
        dict(zip(keys, r, strict=True))
        for r in _rows(conn, CUSTOMERS_PAGE, {"after": after, "limit": limit})
    ]


def customer(conn, customer_id: int) -> dict[str, Any] | None:
    rows = _rows(conn, CUSTOMER, {"id": customer_id})
    return dict(zip(("id", "key", "name", "created_at"), rows[0], strict=True)) if rows else None


def inbox_page(conn, customer_id: int, cursor: Cursor | None, limit: int):
    """Conversations most recently active first; ``(rows, next cursor or None)``."""
    keys = ("id", "topic", "last_message_at", "message_count", "participant_count")
    rows: list[tuple] = []
    if cursor is None or cursor.at is not None:
        params = {
            "customer": customer_id,
            "at": cursor.at if cursor else None,
            "id": cursor.id if cursor else None,
            "limit": limit + 1,
        }
        rows = _rows(conn, INBOX_ACTIVE, params)
    if len(rows) <= limit:
        quiet_after = cursor.id if cursor is not None and cursor.at is None else None
        params = {"customer": customer_id, "id": quiet_after, "limit": limit + 1 - len(rows)}
        rows += _rows(conn, INBOX_QUIET, params)
    more = len(rows) > limit
    rows = rows[:limit]
    page = [
        {**dict(zip(keys, r[:5], strict=True)), "contacts": r[5], "preview": r[6]} for r in rows
    ]
    last = page[-1] if page else None
    return page, (Cursor(last["last_message_at"], last["id"]) if more and last else None)


def conversation(conn, conversation_id: int) -> dict[str, Any] | None:
    rows = _rows(conn, CONVERSATION, {"id": conversation_id})
    if not rows:
        return None
    keys = (
        "id",
        "customer_id",
        "customer_name",
        "topic",
        "created_at",
        "last_message_at",
        "message_count",
        "participant_count",
    )
    found = dict(zip(keys, rows[0], strict=True))
    found["participants"] = [
        {"role": r[0], "id": r[1], "name": r[2], "addresses": r[3]}
        for r in _rows(conn, PARTICIPANTS, {"id": conversation_id})
    ]
    return found


def messages_page(conn, conversation_id: int, cursor: Cursor | None, limit: int):
    """Messages newest first, with their attachments' metadata; ``(rows, next cursor)``."""
    params = {
        "conversation": conversation_id,
        "at": cursor.at if cursor else None,
        "id": cursor.id if cursor else None,
        "limit": limit + 1,
    }
    rows = _rows(conn, MESSAGES_PAGE, params)
    more = len(rows) > limit
    rows = rows[:limit]
    width = len(MESSAGE_COLUMNS)
    page = [
        {
            **dict(zip(MESSAGE_COLUMNS, r[:width], strict=True)),
            "provider": r[width],
            "kind": r[width + 1],
            "attachments": [],
        }
        for r in rows
    ]
    with_files = [m["message_id"] for m in page if m["attachments_count"]]
    if with_files:
        by_id = {m["message_id"]: m for m in page}
        for message_id, attachment_id, filename, content_type, size, url in _rows(
            conn, ATTACHMENTS, {"ids": with_files}
        ):
            by_id[message_id]["attachments"].append(
                {
                    "id": attachment_id,
                    "name": filename or url_name(url),
                    "content_type": content_type,
                    "size": size,
                }
            )
    last = page[-1] if page else None
    return page, (Cursor(last["sent_at"], last["message_id"]) if more and last else None)


def url_name(url: str) -> str:
    """A name to show for an attachment that came without one: its URL's last part."""
    tail = url.split("?", 1)[0].split("#", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    return tail[:120] or "(unnamed)"


__all__ = [
    "MESSAGE_COLUMNS",
    "Cursor",
    "conversation",
    "customer",
    "customers_page",
    "endpoints_page",
    "inbox_page",
    "messages_page",
    "url_name",
]
