"""Helpers of the privacy tests: canonical events and a generic scan of the database."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from convdb.ingest import ingest_messages, parse_message

T0 = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)


def event(
    n: int,
    customer: str,
    sender: str,
    to: str,
    body: str,
    *,
    direction: str = "inbound",
    name: str | None = None,
    kind: str = "email",
    key: str | None = None,
    attachments: list[dict] | None = None,
    sent_at: dt.datetime | None = None,
    subject: str | None = None,
) -> dict:
    payload = {
        "customer": {"key": customer, "name": customer.title()},
        "provider": {"kind": kind, "name": "p"},
        "direction": direction,
        "message_id": f"{customer}-{n}",
        "from": {"address": sender},
        "to": [{"address": a} for a in to.split(",")],
        "body": body,
        "sent_at": (sent_at or T0 + dt.timedelta(minutes=n)).isoformat(),
    }
    if name:
        payload["from"]["name"] = name
    if key:
        payload["conversation_key"] = key
    if attachments:
        payload["attachments"] = attachments
    if subject:
        payload["subject"] = subject
    return payload


def ingest(db, payloads: list[dict]) -> list[int | None]:
    with db.atomic():
        return ingest_messages(
            db,
            [
                parse_message(
                    p, "message.received" if p["direction"] == "inbound" else "message.sent"
                )
                for p in payloads
            ],
        )


# Every column of every table whose type can hold text, from the catalog (a
# plugin's table or a future one is covered too): text, varchar, citext,
# jsonb and json, tsvector, and arrays of these.
TEXT_COLUMNS = """
SELECT c.table_schema, c.table_name, c.column_name
  FROM information_schema.columns c
  JOIN information_schema.tables t
    ON t.table_schema = c.table_schema AND t.table_name = c.table_name
 WHERE t.table_type = 'BASE TABLE'
   AND c.table_schema NOT IN ('pg_catalog', 'information_schema')
   AND (c.udt_name IN ('text', 'varchar', 'bpchar', 'citext', 'jsonb', 'json', 'tsvector',
                       'name', '_text', '_varchar', '_citext', '_jsonb', '_json', '_tsvector'))
 ORDER BY 1, 2, 3
"""


def scan(db, needles: list[str]) -> list[tuple[str, str, str, str]]:
    """(table, column, needle, ctid) of every row holding a needle (case-insensitive)."""
    found = []
    for schema, table, column in db.execute_sql(TEXT_COLUMNS).fetchall():
        for needle in needles:
            rows = db.execute_sql(
                f'SELECT ctid::text FROM "{schema}"."{table}" '
                f'WHERE strpos(lower("{column}"::text), lower(%s)) > 0',
                (needle,),
            ).fetchall()
            found += [(table, column, needle, r[0]) for r in rows]
    return found


# The customers whose data holds or references a row, by table (%s: the row's ctid).
_OWNERS = {
    "email_addresses": "SELECT ca.customer_id FROM email_addresses d "
    "JOIN contact_addresses ca ON ca.email_address_id = d.id WHERE d.ctid = %s::tid",
    "phone_numbers": "SELECT ca.customer_id FROM phone_numbers d "
    "JOIN contact_addresses ca ON ca.phone_number_id = d.id WHERE d.ctid = %s::tid",
    "email_bodies": "SELECT c.customer_id FROM email_bodies d JOIN messages m "
    "ON m.email_body_id = d.id JOIN conversations c ON c.id = m.conversation_id "
    "WHERE d.ctid = %s::tid",
    "xms_bodies": "SELECT c.customer_id FROM xms_bodies d JOIN messages m "
    "ON m.xms_body_id = d.id JOIN conversations c ON c.id = m.conversation_id "
    "WHERE d.ctid = %s::tid",
    "attachment_urls": "SELECT c.customer_id FROM attachment_urls d "
    "JOIN attachments a ON a.url_id = d.id JOIN message_attachments ma "
    "ON ma.attachment_id = a.id JOIN messages m ON m.id = ma.message_id "
    "JOIN conversations c ON c.id = m.conversation_id WHERE d.ctid = %s::tid",
    "attachments": "SELECT c.customer_id FROM attachments d "
    "JOIN message_attachments ma ON ma.attachment_id = d.id JOIN messages m "
    "ON m.id = ma.message_id JOIN conversations c ON c.id = m.conversation_id "
    "WHERE d.ctid = %s::tid",
    "inbound_events": "SELECT c.id FROM inbound_events d JOIN customers c "
    "ON c.key = d.payload -> 'customer' ->> 'key' WHERE d.ctid = %s::tid",
}


def owners(db, table: str, ctid: str) -> set[int]:
    """The customers whose data is, or references, that row (empty: nobody's known)."""
    sql = _OWNERS.get(table)
    if sql is None:
        has_customer = db.execute_sql(
            "SELECT 1 FROM information_schema.columns WHERE table_name = %s "
            "AND column_name = 'customer_id'",
            (table,),
        ).fetchone()
        if not has_customer:
            return set()
        sql = f'SELECT customer_id FROM "{table}" WHERE ctid = %s::tid'
    return {r[0] for r in db.execute_sql(sql, (ctid,)).fetchall()}


def scan_files(root: Path, needles: list[bytes]) -> list[tuple[Path, bytes]]:
    """(file, needle) of every file under ``root`` holding a needle."""
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        found += [(path, n) for n in needles if n in data]
    return found
