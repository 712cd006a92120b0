"""Export: everything convdb holds about one person for one customer, as one JSON document.

::

    from convdb.privacy import export_contact

    document = export_contact(db, "acme", "jane.doe@example.com")
    json.dumps(document)

The shape (``format`` ``convdb.contact-export``, ``version`` 1; described
field by field in ``docs/privacy.md``)::

    {"format": "convdb.contact-export", "version": 1, "exported_at": "...Z",
     "customer": {"key": "acme"}, "contacts": [
        {"id", "display_name", "created_at",
         "addresses": [{"kind": "email"|"phone", "address", "normalized"}],
         "conversations": [{"id", "topic", "roles", "created_at", "messages": [
             {"id", "direction", "sent_by_contact", "provider": {"kind", "name"},
              "provider_message_id", "sent_at", "received_at", "body",
              "status", "status_at",
              "attachments": [{"url", "content_type", "size", "filename"}]}]}],
         "queue_events": [{"id", "event_type", "status", "received_at", "payload"}]}]}

``contacts`` is empty when nobody matches: the export of an erased person
is empty. ``status`` and ``status_at`` are null until delivery statuses are
recorded (when ``messages`` has no such columns, they are null).
"""

from __future__ import annotations

import datetime as dt

import peewee

from .erase import contact_addresses, customer_id_of, events_naming, find_contact, normalize_address

__all__ = ["EXPORT_FORMAT", "EXPORT_VERSION", "export_contact"]

EXPORT_FORMAT = "convdb.contact-export"
EXPORT_VERSION = 1


def _iso(value) -> str | None:
    return None if value is None else value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _has_status(db) -> bool:
    return bool(
        db.execute_sql(
            "SELECT count(*) = 2 FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = 'messages' "
            "AND column_name IN ('status', 'status_at')"
        ).fetchone()[0]
    )


def _messages(db, conversation_id: int, contact_id: int, status: bool) -> list[dict]:
    columns = "m.status, m.status_at" if status else "NULL, NULL"
    rows = db.execute_sql(
        f"""
SELECT m.id, m.direction, m.sender_id = %s, p.kind, p.name, m.provider_message_id,
       m.sent_at, m.received_at, coalesce(eb.raw, xb.raw), {columns},
       coalesce((SELECT json_agg(json_build_object(
                    'url', u.raw, 'content_type', a.content_type, 'size', a.size,
                    'filename', a.filename) ORDER BY a.id)
                   FROM message_attachments ma
                   JOIN attachments a ON a.id = ma.attachment_id
                   JOIN attachment_urls u ON u.id = a.url_id
                  WHERE ma.message_id = m.id), '[]')
  FROM messages m
  JOIN providers p ON p.id = m.provider_id
  LEFT JOIN email_bodies eb ON eb.id = m.email_body_id
  LEFT JOIN xms_bodies xb ON xb.id = m.xms_body_id
 WHERE m.conversation_id = %s
 ORDER BY m.sent_at, m.id""",
        (contact_id, conversation_id),
    ).fetchall()
    return [
        {
            "id": r[0],
            "direction": r[1],
            "sent_by_contact": bool(r[2]),
            "provider": {"kind": r[3], "name": r[4]},
            "provider_message_id": r[5],
            "sent_at": _iso(r[6]),
            "received_at": _iso(r[7]),
            "body": r[8],
            "status": r[9],
            "status_at": _iso(r[10]),
            "attachments": r[11],
        }
        for r in rows
    ]


def _contact(db, customer_key: str, contact_id: int) -> dict:
    status = _has_status(db)
    contact = db.execute_sql(
        "SELECT id, display_name, created_at FROM contacts WHERE id = %s", (contact_id,)
    ).fetchone()
    addresses = db.execute_sql(
        """
SELECT CASE WHEN ea.id IS NOT NULL THEN 'email' ELSE 'phone' END,
       coalesce(ea.raw, pn.raw), coalesce(ea.lowered, pn.e164)
  FROM contact_addresses ca
  LEFT JOIN email_addresses ea ON ea.id = ca.email_address_id
  LEFT JOIN phone_numbers pn ON pn.id = ca.phone_number_id
 WHERE ca.contact_id = %s ORDER BY ca.id""",
        (contact_id,),
    ).fetchall()
    conversations = db.execute_sql(
        """
SELECT c.id, c.topic, c.created_at, array_agg(DISTINCT p.role ORDER BY p.role)
  FROM conversations c
  JOIN conversation_participants p ON p.conversation_id = c.id AND p.contact_id = %s
 GROUP BY c.id ORDER BY c.id""",
        (contact_id,),
    ).fetchall()
    normalized, _, _ = contact_addresses(db, contact_id)
    events = [e[0] for e in events_naming(db, customer_key, normalized)]
    queue = db.execute_sql(
        "SELECT id, event_type, status, received_at, payload FROM inbound_events "
        "WHERE id = ANY(%s) ORDER BY id",
        (events,),
    ).fetchall()
    return {
        "id": contact[0],
        "display_name": contact[1],
        "created_at": _iso(contact[2]),
        "addresses": [{"kind": k, "address": a, "normalized": n} for k, a, n in addresses],
        "conversations": [
            {
                "id": c[0],
                "topic": c[1],
                "created_at": _iso(c[2]),
                "roles": list(c[3]),
                "messages": _messages(db, c[0], contact_id, status),
            }
            for c in conversations
        ],
        "queue_events": [
            {
                "id": q[0],
                "event_type": q[1],
                "status": q[2],
                "received_at": _iso(q[3]),
                "payload": q[4],
            }
            for q in queue
        ],
    }


def export_contact(
    db: peewee.Database,
    customer_key: str,
    address: str | None = None,
    *,
    contact_id: int | None = None,
) -> dict:
    """The export document of the person ``address`` (or ``contact_id``) of ``customer_key``.

    Read in one repeatable-read snapshot, so it is consistent. An unknown
    customer or an address that does not normalize raises
    :class:`~convdb.exceptions.ConvdbError`; nobody matching gives
    ``contacts: []``.
    """
    if address is not None:
        normalize_address(address)
    outer = db.in_transaction()
    with db.atomic():
        if not outer:  # inside a caller's transaction, its snapshot is the one read
            db.execute_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        customer_id = customer_id_of(db, customer_key)
        found = find_contact(db, customer_id, address, contact_id)
        contacts = [] if found is None else [_contact(db, customer_key, found)]
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "exported_at": _iso(dt.datetime.now(dt.UTC)),
        "customer": {"key": customer_key},
        "contacts": contacts,
    }
