# ruff: noqa: RUF001  (look-alike characters are what these tests are about)
"""Normalization and dedup keys, without a database (see test_dedup_db.py for SQL)."""

from __future__ import annotations

import hashlib
import importlib
import sys

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from convdb.dedup import (
    WHITESPACE,
    dedup_hash,
    normalize_body,
    normalize_email,
    normalize_phone,
    normalize_url,
)
from convdb.exceptions import ConfigError

NORMALIZERS = [normalize_body, normalize_email, normalize_url, normalize_phone]
INT64 = (-(2**63), 2**63 - 1)

# Text PostgreSQL can store: no NUL, no lone surrogate.
storable_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))
# Text rich in the characters that make normalization interesting.
tricky_text = st.text(
    st.one_of(
        st.sampled_from(WHITESPACE),
        st.sampled_from("AaΣσςİIıßẞÉé\u0301\u0307\u0327Å\u212b@.+-"),
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    )
)
phone_like = st.text(
    st.sampled_from("0123456789+-(). x#ext０１２３４５６７８９＋" + WHITESPACE[:12])
)


def test_whitespace_is_exactly_str_isspace():
    expected = {chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()}
    assert set(WHITESPACE) == expected
    assert len(WHITESPACE) == len(expected)  # no duplicates


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", -3162216497309240828),
        ("a", 919145239626757800),
        ("hello world", 6824707963431612112),
        ("i̇stanbul@bücher.de", 3772449051471061080),
        ("+15551234567", -2520221528937075166),
    ],
)
def test_dedup_hash_known_values(text, expected):
    # Values computed by PostgreSQL's convdb_hash_v1: the key may never drift.
    assert dedup_hash(text) == expected


@given(storable_text)
def test_dedup_hash_is_md5_prefix_as_signed_int64(text):
    key = dedup_hash(text)
    assert isinstance(key, int)
    assert INT64[0] <= key <= INT64[1]
    prefix = hashlib.md5(text.encode("utf-8")).hexdigest()[:16]
    assert key.to_bytes(8, "big", signed=True).hex() == prefix


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Hello,\t\tworld \n", "Hello, world"),
        ("a\u00a0\u00a0b\u3000\u3000c\u2028d\x85e\x1cf", "a b c d e f"),
        ("cafe\u0301", "café"),  # NFD -> NFC
        ("Å", "Å"),  # ANGSTROM SIGN is a singleton: NFC makes it U+00C5
        ("\u200b zero width space is not whitespace", "\u200b zero width space is not whitespace"),
        (" \t\n ", ""),
        ("CASE is Kept 🙂", "CASE is Kept 🙂"),
    ],
)
def test_normalize_body(raw, expected):
    assert normalize_body(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Jane.Doe+Tag@Example.COM\n", "jane.doe+tag@example.com"),
        ("İstanbul@example.com", "i\u0307stanbul@example.com"),  # full case mapping
        ("ΟΔΥΣΣΕΥΣ@example.gr", "οδυσσευς@example.gr"),  # final sigma
        ("STRASSE@ẞ.de", "strasse@ß.de"),
        ("Straße@Bücher.DE", "straße@bücher.de"),  # no IDNA: not xn--bcher-kva.de
        ("E\u0301MILE@example.fr", "émile@example.fr"),
        ("\u00a0a b@c\u3000", "a b@c"),  # inner whitespace is kept
    ],
)
def test_normalize_email(raw, expected):
    assert normalize_email(raw) == expected


def test_normalize_url_only_trims():
    raw = "\u00a0 https://Files.Example/A%20B.png?x=1 \n"
    assert normalize_url(raw) == "https://Files.Example/A%20B.png?x=1"
    assert normalize_url("cafe\u0301") == "cafe\u0301"  # no NFC: bytes of a URL matter


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("+15551234567", "US", "+15551234567"),  # strict E.164 kept, even if invalid
        ("  +4402079460958\n", "US", "+4402079460958"),  # ... exactly as written
        ("+１５５５１２３４５６７", "US", "+15551234567"),  # full-width: NFKC
        ("(415) 555-2671", "US", "+14155552671"),
        ("1-800-FLOWERS", "US", "+18003569377"),
        ("011 44 20 7946 0958", "US", "+442079460958"),
        ("020 7946 0958", "GB", "+442079460958"),
        ("０２０ ７９４６ ０９５８", "GB", "+442079460958"),
        ("+1 415 555 2671 ext. 89", "US", "+14155552671"),  # extension dropped
        ("+1 555 123 4567 ext. 89", "US", "+15551234567"),  # invalid: best effort, no ext
        ("0044 20 7946 0958", "US", "+442079460958"),
        ("020 7946 0958", "US", "02079460958"),  # wrong region: digits, not +1020...
        ("72345", "US", "72345"),  # short code
        ("+999 123", "US", "+999123"),
        ("415.555.2671 (cell)", "US", "+14155552671"),
        ("tel:+1-415-555-2671", "US", "+14155552671"),
        ("tel:+1-555-123-4567", "GB", "+15551234567"),  # invalid, yet international
        ("TEL:+2.645028", "DE", "+2645028"),  # not read as a German number
    ],
)
def test_normalize_phone(raw, region, expected):
    assert normalize_phone(raw, region) == expected


def test_sql_trunk_prefixes_are_phonenumbers_own():
    """The national prefixes migration 018 gives SQL are those phonenumbers parses with.

    A calling code phonenumbers adds later is refused by SQL (safe); a pattern
    that changed would make SQL and Python differ: ship it in a new
    ``convdb_phone_trunk_prefixes_vN`` and ``convdb_normalize_phone_vN``.
    """
    from phonenumbers import PhoneMetadata, region_code_for_country_code

    migration = importlib.import_module("convdb.migrations.018_dedup_from_raw")
    changed = {}
    for code, pattern in migration._trunk_prefixes().items():
        metadata = PhoneMetadata.metadata_for_region_or_calling_code(
            int(code), region_code_for_country_code(int(code))
        )
        current = metadata and (metadata.national_prefix_for_parsing or "").replace("\\d", "[0-9]")
        if current != pattern:
            changed[code] = (pattern, current)
    assert changed == {}
    assert len(migration._trunk_prefixes()) == 215


def test_normalize_phone_region_default(monkeypatch, tmp_path):
    from convdb.dedup import normalize as dedup

    monkeypatch.chdir(tmp_path)  # no .env here
    monkeypatch.delenv("CONVDB_PHONE_REGION", raising=False)
    dedup._configured_region.cache_clear()
    assert normalize_phone("415 555 2671") == "+14155552671"
    monkeypatch.setenv("CONVDB_PHONE_REGION", "gb")
    dedup._configured_region.cache_clear()  # the setting is read once per process
    assert normalize_phone("020 7946 0958") == "+442079460958"
    (tmp_path / ".env").write_text("CONVDB_PHONE_REGION=DE\n")
    monkeypatch.delenv("CONVDB_PHONE_REGION")
    dedup._configured_region.cache_clear()
    assert normalize_phone("030 1234567") == "+49301234567"
    monkeypatch.setenv("CONVDB_PHONE_REGION", "XX")
    dedup._configured_region.cache_clear()
    with pytest.raises(ConfigError, match="CONVDB_PHONE_REGION='XX': not one of the valid"):
        normalize_phone("020 7946 0958")
    with pytest.raises(ValueError, match="unknown phone region"):
        normalize_phone("020 7946 0958", "ZZ")
    dedup._configured_region.cache_clear()


@pytest.mark.parametrize("raw", ["hello", "", "  ", "+", "ext."])
def test_normalize_phone_without_digits_raises(raw):
    with pytest.raises(ValueError):
        normalize_phone(raw, "US")


@pytest.mark.parametrize("normalize", [*NORMALIZERS, dedup_hash])
@pytest.mark.parametrize("raw", ["a\x00b", "a\ud800b"])
def test_unstorable_text_raises(normalize, raw):
    with pytest.raises(ValueError):
        normalize(raw)


@pytest.mark.parametrize("normalize", [normalize_body, normalize_email, normalize_url])
@given(text=tricky_text)
@example(text="ΑΣ Σ")
@example(text=" \u0345Σ\u00a0")
def test_text_normalizers_are_idempotent(normalize, text):
    once = normalize(text)
    assert normalize(once) == once


@given(text=phone_like)
@example(text="(00) 123")
@example(text="+1 555 123 4567 ext. 89")
def test_normalize_phone_is_idempotent(text):
    try:
        once = normalize_phone(text, "US")
    except ValueError:
        return
    assert normalize_phone(once, "US") == once


@given(tricky_text)
def test_normalize_body_shape(text):
    body = normalize_body(text)
    assert body == body.strip(WHITESPACE)
    assert all(ch == " " for ch in body if ch.isspace())
    assert "  " not in body
    assert body.split() == normalize_body(" ".join(text.split())).split()
