"""Normalization and the 64-bit key of the dedup tables: pure functions, no database.

Every email address, phone number, body and attachment URL is stored once, keyed
by :func:`dedup_hash` of its normalized form. The dedup triggers (migration
``018_dedup_from_raw``) derive the same normalized value and key from ``raw``
for every row, whoever writes it:

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

import phonenumbers

from ..config import load_settings

__all__ = [
    "WHITESPACE",
    "dedup_hash",
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
