"""Garbage collection of shared rows: a dedup row goes when, and only when, nothing uses it.

Email addresses, phone numbers, bodies and attachment URLs are stored once
and shared, across conversations and across customers. After an erasure or
a retention run deletes messages and contacts, the rows they used are
*candidates*; :func:`collect` deletes the candidates that nothing references
any more, and keeps the rest (another customer's message with the same
body, another contact with the same address).

"Nothing references it" is read from the catalog: every foreign key that
points at the table, so a plugin's table that references a dedup row keeps
it too.

Race with ingestion (``docs/privacy.md``, "Concurrency"): ingestion reads
the dedup rows it needs without a lock, then locks them ``FOR KEY SHARE``
(:attr:`convdb.dedup.DedupTable.lock_sql`, the lock a foreign key check
takes) before it inserts anything that references them; a row deleted in
between is stored again. Garbage collection first locks its candidates
``FOR UPDATE`` (:func:`lock`), which waits for every ingestion holding one
of them to commit; its ``DELETE`` then runs in a later snapshot, sees the
messages those ingestions committed, and keeps the rows they use. An
ingestion that comes later waits for the erasure to commit, finds the row
gone, and inserts it again. Either way no reference ever dangles and no
foreign key check fails.

Attachment files: a stored attachment's URL names its bytes. Once the
transaction that deleted its last ``attachment_urls`` row has committed,
:func:`delete_files` removes the bytes, unless a URL row for them exists
again, or an event not yet ingested names them (:meth:`~convdb.attachments.
AttachmentStore.delete` keeps bytes that were stored again meanwhile).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

import peewee
from psycopg2.extensions import quote_ident

from .. import attachments as store_lib
from ..sqlarray import Array

__all__ = ["DEDUP_TABLES", "Candidates", "collect", "delete_files", "lock"]

#: The dedup tables in the order erasure and ingestion lock their rows.
DEDUP_TABLES = ("email_addresses", "phone_numbers", "email_bodies", "xms_bodies", "attachment_urls")

# Every single-column foreign key that points at a table: (table, column).
REFERENCES = """
SELECT c.conrelid::regclass::text, a.attname
  FROM pg_constraint c
  JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
 WHERE c.contype = 'f' AND c.confrelid = %s::regclass AND cardinality(c.conkey) = 1
 ORDER BY 1, 2
"""


@dataclass
class Candidates:
    """Rows that may have lost their last user, by table (ids)."""

    rows: dict[str, set[int]]

    @classmethod
    def empty(cls) -> Candidates:
        return cls({t: set() for t in (*DEDUP_TABLES, "attachments")})

    def add(self, table: str, ids: Iterable[int | None]) -> None:
        self.rows[table].update(i for i in ids if i is not None)


def _ids(db: peewee.Database, sql: str, params) -> list[int]:
    return [r[0] for r in db.execute_sql(sql, params).fetchall()]


def lock(db: peewee.Database, table: str, ids: Iterable[int]) -> None:
    """Lock ``ids`` of ``table`` ``FOR UPDATE``, in id order (waits for ingestions using them)."""
    wanted = sorted(set(ids))
    if wanted:
        db.execute_sql(
            f"SELECT id FROM {table} WHERE id = ANY(%s::bigint[]) ORDER BY id FOR UPDATE",
            (Array(wanted),),
        )


def _unreferenced(db: peewee.Database, table: str) -> str:
    checks = [
        f"NOT EXISTS (SELECT 1 FROM {ref} r WHERE r.{quote_ident(col, _raw(db))} = d.id)"
        for ref, col in db.execute_sql(REFERENCES, (table,)).fetchall()
    ]
    return " AND ".join(checks) or "true"


def _raw(db: peewee.Database):
    return db.connection()


def collect(db: peewee.Database, candidates: Candidates) -> tuple[dict[str, int], list[str]]:
    """Delete the candidates nothing references; (count per table, stored-file URLs deleted).

    In the caller's transaction, after the rows that used them are deleted.
    Attachments first (their URLs become candidates), then every dedup table.
    """
    counts: dict[str, int] = {}
    attachment_ids = sorted(candidates.rows["attachments"])
    if attachment_ids:
        urls = _ids(
            db,
            f"DELETE FROM attachments d WHERE d.id = ANY(%s::bigint[]) "
            f"AND {_unreferenced(db, 'attachments')} RETURNING d.url_id",
            (Array(attachment_ids),),
        )
        counts["attachments"] = len(urls)
        candidates.add("attachment_urls", urls)
    files: list[str] = []
    for table in DEDUP_TABLES:
        ids = sorted(candidates.rows[table])
        if not ids:
            continue
        lock(db, table, ids)
        cursor = db.execute_sql(
            f"DELETE FROM {table} d WHERE d.id = ANY(%s::bigint[]) "
            f"AND {_unreferenced(db, table)} "
            f"RETURNING {'d.normalized' if table == 'attachment_urls' else 'd.id'}",
            (Array(ids),),
        )
        deleted = [r[0] for r in cursor.fetchall()]
        counts[table] = len(deleted)
        if table == "attachment_urls":
            files = [u for u in deleted if store_lib.digest_of(u)]
    return counts, files


# Events not yet finished that name a stored file (their payload holds its URL).
_EVENTS_NAMING = """
SELECT 1 FROM inbound_events
 WHERE status IN ('pending', 'processing', 'dead') AND payload::text LIKE %s LIMIT 1
"""


def delete_files(db: peewee.Database, urls: Iterable[str], since: dt.datetime, store=None) -> int:
    """Remove the bytes of ``urls`` (after the commit that deleted their rows); how many.

    A file is kept when its URL has a row again, when an event not yet
    ingested names it, or when the store says it was stored again since
    ``since`` (the erasure's start).
    """
    removed = 0
    for url in sorted(set(urls)):
        digest = store_lib.digest_of(url)
        if digest is None:
            continue
        if db.execute_sql(
            "SELECT 1 FROM attachment_urls WHERE hash = convdb_hash_v1(%s)", (url,)
        ).fetchone():
            continue
        if db.execute_sql(_EVENTS_NAMING, (f"%{digest}%",)).fetchone():
            continue
        store = store or store_lib.get_store()
        if store.delete(url, not_after=since):
            removed += 1
    return removed
