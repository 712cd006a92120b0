"""Interning: the one upsert that turns values into dedup row ids, for any batch size.

:func:`intern_values` finds or inserts a whole column of values in one
statement per table and detects 64-bit collisions (two different normalized
values with one key) instead of merging them; the ``intern_*`` functions are
a batch of one::

    from convdb.dedup import intern_email_address

    row_id = intern_email_address(db, "Jane.Doe@Example.com")
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import peewee

from ..exceptions import DedupCollisionError
from ..pgerrors import sqlstate
from ..sqlarray import Array
from .normalize import (
    dedup_hash,
    normalize_body,
    normalize_email,
    normalize_phone,
    normalize_url,
)

__all__ = [
    "ATTACHMENT_URLS",
    "COLLISION_SQLSTATE",
    "EMAIL_ADDRESSES",
    "EMAIL_BODIES",
    "PHONE_NUMBERS",
    "XMS_BODIES",
    "DedupTable",
    "intern_attachment_url",
    "intern_email_address",
    "intern_email_body",
    "intern_phone_number",
    "intern_values",
    "intern_xms_body",
]

#: SQLSTATE the triggers raise when a hash already belongs to a different value.
COLLISION_SQLSTATE = "CV001"
# Rounds of read, lock, insert: a row is only missed again when garbage
# collection deletes it between each round and the next.
_ATTEMPTS = 4


@dataclass(frozen=True)
class DedupTable:
    """A dedup table and its normalized column; the statements that intern into it.

    Both take whole columns (one array each): interning one value or a
    thousand is the same statement (:func:`intern_values`).
    """

    name: str
    column: str
    empty_ok: bool = True

    @property
    def select_sql(self) -> str:
        """(id, hash, normalized) of the stored rows among the hashes given."""
        return f"SELECT id, hash, {self.column} FROM {self.name} WHERE hash = ANY(%s::bigint[])"

    @property
    def lock_sql(self) -> str:
        """Lock stored rows against deletion (``FOR KEY SHARE``, as a foreign key check
        does) in id order; the ids still there. Garbage collection
        (:mod:`convdb.privacy.gc`) deletes a row only under ``FOR UPDATE``."""
        return f"SELECT id FROM {self.name} WHERE id = ANY(%s::bigint[]) ORDER BY id FOR KEY SHARE"

    @property
    def insert_sql(self) -> str:
        """Insert (raw, hash, normalized) rows in the order given; (id, hash) of each
        one inserted. A hash stored meanwhile, by a transaction that has
        committed, returns nothing and leaves that row alone (no lock taken)."""
        return (
            f"INSERT INTO {self.name} (raw, hash, {self.column}) "
            f"SELECT * FROM unnest(%s::text[], %s::bigint[], %s::text[]) "
            f"ON CONFLICT (hash) DO NOTHING RETURNING id, hash"
        )


EMAIL_BODIES = DedupTable("email_bodies", "normalized")
XMS_BODIES = DedupTable("xms_bodies", "normalized")
EMAIL_ADDRESSES = DedupTable("email_addresses", "lowered", empty_ok=False)
PHONE_NUMBERS = DedupTable("phone_numbers", "e164", empty_ok=False)
ATTACHMENT_URLS = DedupTable("attachment_urls", "normalized", empty_ok=False)


def _collision_error(exc: BaseException) -> DedupCollisionError | None:
    """The :class:`DedupCollisionError` a trigger reported through ``exc``, if it did."""
    if sqlstate(exc) != COLLISION_SQLSTATE:
        return None
    original = exc.args[0] if exc.args else exc
    message = getattr(getattr(original, "diag", None), "message_primary", None)
    return DedupCollisionError(message or str(original).strip())


def _preview(value: str, limit: int = 80) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "…")


def _execute(db: peewee.Database, sql: str, params: Sequence) -> list[tuple]:
    """Run ``sql`` with every list in ``params`` sent as one array literal."""
    cursor = db.execute_sql(sql, tuple(Array(p) if type(p) is list else p for p in params))
    return cursor.fetchall()


def intern_values(
    db: peewee.Database,
    table: DedupTable,
    values: dict[str, str],
    *,
    stored: Iterable[tuple[int, int, str]] | None = None,
    execute: Callable[[peewee.Database, str, Sequence], list[tuple]] = _execute,
) -> dict[str, int]:
    """Ids of ``table``'s rows for ``values`` (normalized -> the raw text to store if new).

    Read first: an existing value is never written or locked. ``stored``: the
    (id, hash, normalized) rows a caller's lookup already found for these
    hashes (else they are read here). The missing values are inserted in hash
    order (two transactions meet their new values in the same order); one
    that a concurrent transaction stored first is read again. ``execute``
    runs the statements (:mod:`convdb.ingest` prepares them).

    A 64-bit collision (two normalized values with one hash: within
    ``values``, with a stored row, or reported by the table's trigger) raises
    :class:`~convdb.exceptions.DedupCollisionError`; nothing is merged. An
    email address, phone number or URL that is empty once trimmed raises
    ``ValueError`` before any SQL runs.
    """
    by_hash: dict[int, str] = {}
    for normalized in values:
        if not normalized and not table.empty_ok:
            # The triggers refuse it too (SQLSTATE CV004).
            raise ValueError(
                f"{table.name}: refusing {_preview(values[normalized])}, empty once trimmed"
            )
        key = dedup_hash(normalized)
        if by_hash.setdefault(key, normalized) != normalized:
            raise DedupCollisionError(
                f"{table.name}: 64-bit hash collision on {key} between "
                f"{_preview(by_hash[key])} and {_preview(normalized)}"
            )
    ids: dict[str, int] = {}
    todo = sorted(by_hash)
    if stored is None:
        stored = execute(db, table.select_sql, [todo]) if todo else []
    for _ in range(_ATTEMPTS):
        # Rows stored by others are locked before they are used: a row that
        # garbage collection deleted since it was read is stored again.
        found: dict[str, int] = {}
        for row in stored:
            if row[1] in by_hash:
                _found(table, by_hash, found, row)
        if found:
            kept = {r[0] for r in execute(db, table.lock_sql, [sorted(found.values())])}
            ids.update((text, id_) for text, id_ in found.items() if id_ in kept)
        missing = [h for h in todo if by_hash[h] not in ids]
        if not missing:
            return ids
        normalized = [by_hash[h] for h in missing]
        try:
            rows = execute(
                db, table.insert_sql, [[values[n] for n in normalized], missing, normalized]
            )
        except peewee.DatabaseError as exc:
            error = _collision_error(exc)
            if error is None:
                raise
            raise error from exc
        for id_, key in rows:  # ours, not committed: nobody else can delete them
            if key in by_hash:
                ids[by_hash[key]] = id_
        todo = [h for h in missing if by_hash[h] not in ids]
        if not todo:
            return ids
        # stored by a concurrent transaction since we looked
        stored = execute(db, table.select_sql, [todo])
    raise RuntimeError(
        f"{table.name}: {len(by_hash) - len(ids)} value(s) not found under their key "
        "after inserting them (does the database's trigger normalize them differently?)"
    )


def _found(table: DedupTable, by_hash: dict[int, str], ids: dict[str, int], row) -> None:
    id_, key, text = row
    if key in by_hash and text != by_hash[key]:
        raise DedupCollisionError(
            f"{table.name}: 64-bit hash collision on {key} between existing "
            f"{_preview(text)} and new {_preview(by_hash[key])}"
        )
    ids[text] = id_


def _intern(db: peewee.Database, table: DedupTable, raw: str, normalized: str) -> int:
    return intern_values(db, table, {normalized: raw})[normalized]


def intern_email_body(db: peewee.Database, raw: str) -> int:
    """Id of the ``email_bodies`` row for ``raw`` (created if needed).

    Every ``intern_*`` helper is :func:`intern_values` for one value: it
    raises :class:`~convdb.exceptions.DedupCollisionError` when the key
    already belongs to a different normalized value, and ``ValueError`` for
    an email address or URL that is empty once trimmed.
    """
    return _intern(db, EMAIL_BODIES, raw, normalize_body(raw))


def intern_xms_body(db: peewee.Database, raw: str) -> int:
    """Id of the ``xms_bodies`` row (SMS/MMS text) for ``raw``."""
    return _intern(db, XMS_BODIES, raw, normalize_body(raw))


def intern_email_address(db: peewee.Database, raw: str) -> int:
    """Id of the ``email_addresses`` row for ``raw``."""
    return _intern(db, EMAIL_ADDRESSES, raw, normalize_email(raw))


def intern_phone_number(db: peewee.Database, raw: str, region: str | None = None) -> int:
    """Id of the ``phone_numbers`` row for ``raw`` (see :func:`normalize_phone`)."""
    return _intern(db, PHONE_NUMBERS, raw, normalize_phone(raw, region))


def intern_attachment_url(db: peewee.Database, raw: str) -> int:
    """Id of the ``attachment_urls`` row for ``raw``."""
    return _intern(db, ATTACHMENT_URLS, raw, normalize_url(raw))
