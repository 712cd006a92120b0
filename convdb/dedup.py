"""Normalization and 64-bit keys of the dedup tables, and the helpers that intern values.

Every email address, phone number, body and attachment URL is stored once, keyed
by :func:`dedup_hash` of its normalized form. The dedup triggers (migration
``018_dedup_from_raw``) derive the same normalized value and key from ``raw``
for every row, whoever writes it, so both paths meet on one row::

    from convdb.dedup import intern_email_address, normalize_email

    normalize_email("  Jane.Doe@Example.COM\\n")   # 'jane.doe@example.com'
    row_id = intern_email_address(db, "Jane.Doe@Example.com")

- ``email_bodies.normalized``, ``xms_bodies.normalized``: :func:`normalize_body`,
  SQL ``convdb_normalize_body_v1``;
- ``email_addresses.lowered``: :func:`normalize_email`, ``convdb_normalize_email_v1``;
- ``attachment_urls.normalized``: :func:`normalize_url`, ``convdb_normalize_url_v1``;
- ``phone_numbers.e164``: :func:`normalize_phone`, ``convdb_normalize_phone_v2``
  (numbers written with their country code only: SQL has no libphonenumber);
- ``hash`` everywhere: :func:`dedup_hash`, ``convdb_hash_v1``.

An empty email address or attachment URL (once trimmed) is refused on both
paths: ``ValueError`` here, SQLSTATE ``CV004`` from the triggers.

Python and SQL agree on text made of code points assigned in Python's Unicode
version (``unicodedata.unidata_version``, 14.0 on Python 3.11); the tests check
every such code point. A character assigned later may be lowercased or composed
by the server and not by Python: plain SQL and Python would then store two rows
for one value (never one row for two values). Text with NUL (or a lone
surrogate) cannot be stored in PostgreSQL: every function raises ``ValueError``.
"""

from __future__ import annotations

import functools
import hashlib
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import peewee
import phonenumbers

from .config import load_settings
from .exceptions import DedupCollisionError
from .sqlarray import Array

__all__ = [
    "ATTACHMENT_URLS",
    "COLLISION_SQLSTATE",
    "EMAIL_ADDRESSES",
    "EMAIL_BODIES",
    "PHONE_NUMBERS",
    "WHITESPACE",
    "XMS_BODIES",
    "DedupTable",
    "dedup_hash",
    "intern_attachment_url",
    "intern_email_address",
    "intern_email_body",
    "intern_phone_number",
    "intern_values",
    "intern_xms_body",
    "normalize_body",
    "normalize_email",
    "normalize_phone",
    "normalize_url",
]

#: Exactly the code points for which ``str.isspace()`` is true; the SQL functions
#: spell the same set as one bracket class (PostgreSQL's ``\s`` is smaller).
WHITESPACE = (
    "\t\n\v\f\r\x1c\x1d\x1e\x1f \x85\xa0\u1680"
    "\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)
_WHITESPACE_RUN = re.compile(f"[{re.escape(WHITESPACE)}]+")
# ``[0-9]`` rather than ``\d``: only ASCII digits, as in the SQL twin.
_STRICT_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
_ASCII_DIGITS = re.compile(r"[0-9]")

#: SQLSTATE the triggers raise when a hash already belongs to a different value.
COLLISION_SQLSTATE = "CV001"


def _storable(raw: str) -> str:
    if not isinstance(raw, str):
        raise TypeError(f"expected str, got {type(raw).__name__}")
    if "\x00" in raw:
        raise ValueError("text containing NUL cannot be stored in PostgreSQL")
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text containing a lone surrogate cannot be stored") from None
    return raw


@functools.lru_cache(maxsize=1 << 16)  # ingestion hashes a common value several times
def dedup_hash(normalized: str) -> int:
    """The dedup key: md5 of the UTF-8 text, first 8 bytes as a signed big-endian int64.

    SQL twin: ``convdb_hash_v1(text)``, ``('x' || left(md5(t), 16))::bit(64)::bigint``.
    """
    digest = hashlib.md5(_storable(normalized).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def normalize_body(raw: str) -> str:
    """NFC, each run of :data:`WHITESPACE` made one space, then trimmed.

    Newlines collapse too: two bodies that differ only in layout share a row.
    """
    text = unicodedata.normalize("NFC", _storable(raw))
    return _WHITESPACE_RUN.sub(" ", text).strip(" ")


def normalize_url(raw: str) -> str:
    """Leading and trailing :data:`WHITESPACE` removed; nothing else (URLs are case-sensitive)."""
    return _storable(raw).strip(WHITESPACE)


def normalize_email(raw: str) -> str:
    """NFC, trimmed, lowercased with ``str.lower()`` (full case mapping), NFC again.

    ``'İ'`` becomes ``'i̇'`` and a word-final ``'Σ'`` becomes ``'ς'``; the SQL
    twin gets the same from the collation ``convdb_unicode_v1``. The domain is
    not IDNA-encoded (``Bücher.DE`` -> ``bücher.de``, not ``xn--bcher-kva.de``):
    PostgreSQL cannot do it, and both sides must agree. Dots and ``+tags`` are
    kept: they may name different mailboxes.
    """
    text = unicodedata.normalize("NFC", _storable(raw)).strip(WHITESPACE)
    return unicodedata.normalize("NFC", text.lower())


@functools.cache
def _configured_region() -> str:
    # Read once per process: normalization sits on the ingestion hot path.
    # load_settings() has checked it (ConfigError otherwise).
    return load_settings().phone_region


def _phone_region(region: str | None) -> str:
    if not region:
        return _configured_region()
    region = region.upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"region: unknown phone region {region!r} (expected e.g. 'US', 'GB')")
    return region


def _valid_e164(text: str, region: str) -> tuple[str | None, str | None]:
    """(E.164 if ``text`` is a valid number, else None; the extension phonenumbers saw)."""
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None, None
    if phonenumbers.is_valid_number(number):
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), None
    return None, number.extension


def normalize_phone(raw: str, region: str | None = None) -> str:
    """E.164 where possible, else a best-effort digits form.

    ``region`` reads numbers written without a country code; default: the
    ``CONVDB_PHONE_REGION`` environment variable, else ``US``. Steps, after NFKC
    (full-width digits) and trimming :data:`WHITESPACE`:

    1. strict E.164 (``+`` then 2-15 digits, first not 0) is kept exactly as
       written, valid or not, as the SQL twin does (``+4402079460958`` stays,
       though it means ``+442079460958``);
    2. else a number ``phonenumbers`` parses *and* finds valid is formatted as
       E.164: ``(415) 555-2671`` -> ``+14155552671``, ``1-800-FLOWERS`` ->
       ``+18003569377``, ``011 44 20 7946 0958`` -> ``+442079460958``;
       extensions are dropped (``+1 415 555 2671 ext. 89`` -> ``+14155552671``);
    3. else best effort on the ASCII digits, minus an extension phonenumbers
       recognised: ``+`` and the digits when the input starts with ``+`` or
       ``tel:+`` (an RFC 3966 global number), or with ``00`` (``0044 20 7946
       0958`` with region US -> ``+442079460958``);
       the bare digits otherwise, since the country is unknown (``72345`` ->
       ``72345``; ``020 7946 0958`` with region US -> ``02079460958``, not the
       garbage ``+102079460958``). When that form is itself a valid number it
       is formatted as in 2 (``415.555.2671 (cell)`` -> ``+14155552671``),
       which keeps the function idempotent;
    4. no digit at all (``hello``) raises ``ValueError``.

    A number written with its country code (``+`` or ``tel:+``) in digits,
    spaces, dashes, dots and parentheses comes out as ``+`` and its digits
    unless libphonenumber drops a trunk prefix (``+44 (0)20 7946 0958`` ->
    ``+442079460958``): that is the part ``convdb_normalize_phone_v2`` computes
    in SQL, refusing the rest.
    """
    region = _phone_region(region)
    text = unicodedata.normalize("NFKC", _storable(raw)).strip(WHITESPACE)
    if _STRICT_E164.fullmatch(text):
        return text
    e164, extension = _valid_e164(text, region)
    if e164:
        return e164
    digits = "".join(_ASCII_DIGITS.findall(text))
    if extension and digits.endswith(extension) and len(digits) > len(extension):
        digits = digits[: -len(extension)]
    if text.startswith("+") or text[:5].lower() == "tel:+":
        candidate = f"+{digits}"
    elif digits.startswith("00"):  # the international call prefix of most countries
        candidate = f"+{digits[2:]}"
    else:
        candidate = digits
    if candidate in ("", "+"):
        raise ValueError(f"not a phone number (no digits): {raw!r}")
    return _valid_e164(candidate, region)[0] or candidate


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


def _sqlstate(exc: BaseException) -> str | None:
    # peewee wraps the psycopg2 error: it is the first argument and the context.
    for candidate in (exc, *exc.args, exc.__cause__, exc.__context__):
        code = getattr(candidate, "pgcode", None)
        if code:
            return code
    return None


def _collision_error(exc: BaseException) -> DedupCollisionError | None:
    """The :class:`DedupCollisionError` a trigger reported through ``exc``, if it did."""
    if _sqlstate(exc) != COLLISION_SQLSTATE:
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
    hashes = sorted(by_hash)
    if stored is None:
        stored = execute(db, table.select_sql, [hashes]) if hashes else []
    for row in stored:
        _found(table, by_hash, ids, row)
    missing = [h for h in hashes if by_hash[h] not in ids]
    if not missing:
        return ids
    normalized = [by_hash[h] for h in missing]
    try:
        rows = execute(db, table.insert_sql, [[values[n] for n in normalized], missing, normalized])
    except peewee.DatabaseError as exc:
        error = _collision_error(exc)
        if error is None:
            raise
        raise error from exc
    for id_, key in rows:
        if key in by_hash:
            ids[by_hash[key]] = id_
    lost = [h for h in missing if by_hash[h] not in ids]
    if lost:  # stored by a concurrent transaction since we looked
        for row in execute(db, table.select_sql, [lost]):
            _found(table, by_hash, ids, row)
    if len(ids) < len(by_hash):
        raise RuntimeError(
            f"{table.name}: {len(by_hash) - len(ids)} value(s) not found under their key "
            "after inserting them (does the database's trigger normalize them differently?)"
        )
    return ids


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
