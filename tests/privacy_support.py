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
    """(table, column, needle, text) of every row holding a needle (case-insensitive)."""
    found = []
    for schema, table, column in db.execute_sql(TEXT_COLUMNS).fetchall():
        for needle in needles:
            rows = db.execute_sql(
                f'SELECT "{column}"::text FROM "{schema}"."{table}" '
                f'WHERE strpos(lower("{column}"::text), lower(%s)) > 0',
                (needle,),
            ).fetchall()
            found += [(table, column, needle, r[0]) for r in rows]
    return found


def scan_files(root: Path, needles: list[bytes]) -> list[tuple[Path, bytes]]:
    """(file, needle) of every file under ``root`` holding a needle."""
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        found += [(path, n) for n in needles if n in data]
    return found
