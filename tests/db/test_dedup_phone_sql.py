# ruff: noqa: RUF001  (full-width digits are part of what is tested)
"""Phone numbers written in plain SQL: the trigger gives exactly what convdb.dedup gives.

``convdb_normalize_phone_v2`` (migration 018) normalizes a number written with
its country code (``+`` or ``tel:+``) in common formatting, and refuses
(SQLSTATE ``CV003``) whatever it cannot resolve the way libphonenumber does.
"""

from __future__ import annotations

import importlib
import random
import re

import peewee
import phonenumbers
import pytest
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from convdb import dedup
from convdb.dedup import dedup_hash, normalize_phone
from convdb.pgerrors import sqlstate

MIGRATION = importlib.import_module("convdb.migrations.018_dedup_from_raw")
TRUNK_PREFIXES = MIGRATION._trunk_prefixes()
FORMATS = {
    "INTERNATIONAL": PhoneNumberFormat.INTERNATIONAL,
    "E164": PhoneNumberFormat.E164,
    "RFC3966": PhoneNumberFormat.RFC3966,
}
TYPES = [t for name, t in vars(PhoneNumberType).items() if name.isupper() and t >= 0]


def sql_e164(db, inputs: list[str]) -> list[str | None]:
    """``convdb_normalize_phone_v2(x, refuse => false)`` of each input, in one query."""
    (got,) = db.execute_sql(
        "SELECT array_agg(convdb_normalize_phone_v2(x, refuse => false) ORDER BY i) "
        "FROM unnest(%s::text[]) WITH ORDINALITY AS u(x, i)",
        (inputs,),
    ).fetchone()
    return got


def spellings(number: phonenumbers.PhoneNumber) -> dict[str, str]:
    """The number in phonenumbers' three formats and in the usual hand-written variants."""
    shown = {name: phonenumbers.format_number(number, f) for name, f in FORMATS.items()}
    international = shown["INTERNATIONAL"]
    code, national = str(number.country_code), phonenumbers.national_significant_number(number)
    shown.update(
        {
            "dashes": international.replace(" ", "-"),
            "dots": international.replace(" ", "."),
            "parentheses": f"+{code} ({national[:3]}) {national[3:6]}-{national[6:]}".rstrip("-"),
            "spaces": f"+{' '.join(code)} {' '.join(national)}",
            "nbsp and newline": "\u00a0" + international.replace(" ", "\u00a0") + "\n",
            "full-width": international.translate({c: c + 0xFEE0 for c in b"+0123456789"}),
            "TEL:": shown["RFC3966"].upper(),
        }
    )
    return shown


def trunk_may_be_dropped(number: phonenumbers.PhoneNumber) -> bool:
    """Whether the national number starts with what its country reads as a trunk prefix."""
    trunk = TRUNK_PREFIXES[str(number.country_code)]
    national = phonenumbers.national_significant_number(number)
    return bool(trunk) and re.match(f"(?:{trunk})(?<=.)", national) is not None


def examples():
    """(region, type or None for its default, number) for every example phonenumbers has."""
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        yield region, None, phonenumbers.example_number(region)
        for kind in TYPES:
            number = phonenumbers.example_number_for_type(region, kind)
            if number is not None:
                yield region, kind, number
    for code in sorted(phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS):
        yield f"+{code}", None, phonenumbers.example_number_for_non_geo_entity(code)


def test_the_issue_insert_is_normalized(db):
    row = db.execute_sql(
        "INSERT INTO phone_numbers (raw) VALUES ('+1 (415) 555-2671') RETURNING id, e164, hash"
    ).fetchone()
    assert row[1:] == ("+14155552671", dedup_hash("+14155552671"))
    assert dedup.intern_phone_number(db, "(415) 555-2671", "US") == row[0]
    assert db.execute_sql("SELECT count(*) FROM phone_numbers").fetchone() == (1,)


def test_every_region_example_number_like_python(db):
    """Each example number, in every format: SQL gives Python's value, or refuses.

    It refuses exactly where libphonenumber might read the first digits after
    the country code as a trunk prefix; every region's default example is
    accepted in every format.
    """
    cases = [
        (region, kind, style, raw, trunk_may_be_dropped(number))
        for region, kind, number in examples()
        for style, raw in spellings(number).items()
    ]
    got = sql_e164(db, [raw for *_, raw, _ in cases])
    wrong, refused = [], []
    for (region, kind, style, raw, ambiguous), value in zip(cases, got, strict=True):
        if value is None:
            refused.append((region, kind, style))
            if not ambiguous and style != "E164":
                wrong.append((region, kind, style, raw, "refused"))
        elif value != normalize_phone(raw, "US") or (ambiguous and style != "E164"):
            wrong.append((region, kind, style, raw, value, normalize_phone(raw, "US")))
    assert wrong == []
    assert [r for r in refused if r[1] is None] == []
    assert len(cases) > 10_000 and len(refused) < len(cases) / 50


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+1 (415) 555-2671", "+14155552671"),
        ("+1.415.555.2671", "+14155552671"),
        ("+1-415-555-2671", "+14155552671"),
        ("tel:+1-415-555-2671", "+14155552671"),
        ("TEL:+44-20-7946-0958", "+442079460958"),
        (" +44 20 7946 0958\n", "+442079460958"),
        ("+49 (30) 1234567", "+49301234567"),
        ("+39 06 1234 5678", "+390612345678"),  # Italy keeps its leading 0
        ("+7 495 123-45-67", "+74951234567"),
        ("＋８１ ３-１２３４-５６７８", "+81312345678"),
        ("+1 (999) 555-0000", "+19995550000"),  # invalid: + and the digits, like Python
        ("tel:+1 999 555 0000", "+19995550000"),
        ("+882 345 678 90", "+88234567890"),  # a non-geographic calling code
    ],
)
def test_plain_sql_insert_of_international_numbers(db, raw, expected):
    assert normalize_phone(raw, "US") == expected
    row = db.execute_sql(
        "INSERT INTO phone_numbers (raw) VALUES (%s) RETURNING e164, hash", (raw,)
    ).fetchone()
    assert row == (expected, dedup_hash(expected))


@pytest.mark.parametrize(
    "raw",
    [
        "(415) 555-2671",  # national: the region decides
        "4155552671",
        "0044 20 7946 0958",  # an international call prefix: the region decides
        "+44 (0)20 7946 0958",  # a trunk prefix libphonenumber drops
        "+44 020 7946 0958",
        "+1 1 415 555 2671",  # NANP's trunk prefix 1
        "+7 8 495 123 45 67",
        "+7 800 555 35 35",  # 8 is also Russia's trunk prefix: libphonenumber may drop it
        "+261 21 234 56",  # Madagascar: Python gives +261202123456
        "+1 415 555 2671 ext. 89",  # extensions are dropped by Python
        "tel:+1-415-555-2671;ext=89",
        "+1 415 555 2671 #",
        "1-800-FLOWERS",
        "+1 800 FLOWERS",
        "+999 123 456",  # no such country code
        "+0123",
        "+1 415 555 267\u0661",  # an Arabic-Indic digit
        "+1 415/555 2671",
        "tel:+",
        "",
    ],
)
def test_phone_sql_refuses_what_it_cannot_normalize(db, raw):
    with pytest.raises(peewee.DatabaseError) as caught:
        db.execute_sql("INSERT INTO phone_numbers (raw) VALUES (%s)", (raw,))
    assert sqlstate(caught.value) == "CV003"
    message = str(caught.value)
    assert f"phone_numbers: cannot normalize '{raw}' in SQL" in message
    assert "convdb.dedup.normalize_phone()" in message
    db.rollback()
    assert db.execute_sql("SELECT count(*) FROM phone_numbers").fetchone() == (0,)


def random_international(rng: random.Random) -> str:
    """A number with a country code (known or not), odd lengths and separators included."""
    code = rng.choice([*TRUNK_PREFIXES, "0", "28", "999"])
    digits = code + "".join(rng.choice("01234567890018") for _ in range(rng.randint(0, 16)))
    out = "+"
    for i, ch in enumerate(digits):
        out += ch
        if i < len(digits) - 1 and rng.random() < 0.3:
            out += rng.choice([" ", "-", ".", " (", ") ", "(", ")", "  ", " - ", "\u00a0"])
    if rng.random() < 0.3:
        out = rng.choice(["tel:", "TEL:", "Tel:"]) + out
    return out


def test_phone_sql_never_differs_from_python(db):
    """Random numbers with a country code, read with several default regions."""
    rng = random.Random(20251105)
    inputs = [random_international(rng) for _ in range(20_000)]
    got = sql_e164(db, inputs)
    differ = [
        (raw, region, value, normalize_phone(raw, region))
        for raw, value in zip(inputs, got, strict=True)
        if value is not None
        for region in ("US", "GB", "RU", "BR", "AR")
        if normalize_phone(raw, region) != value
    ]
    assert differ == []
    assert sum(v is not None for v in got) > len(inputs) / 2


def test_trunk_prefix_patterns_match_alike_in_postgresql(db):
    """PostgreSQL's regex engine reads every stored pattern as Python's ``re`` does."""
    rng = random.Random(7)
    pairs = [
        (pattern, "".join(rng.choice("01234567891018") for _ in range(rng.randint(0, 14))))
        for pattern in TRUNK_PREFIXES.values()
        if pattern
        for _ in range(200)
    ]
    (got,) = db.execute_sql(
        "SELECT array_agg(n ~ ('^(?:' || p || ')(?<=.)') ORDER BY i) "
        "FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS u(p, n, i)",
        ([p for p, _ in pairs], [n for _, n in pairs]),
    ).fetchone()
    differ = [
        (p, n, g)
        for (p, n), g in zip(pairs, got, strict=True)
        if (re.match(f"(?:{p})(?<=.)", n) is not None) != g
    ]
    assert differ == []
    assert any(got) and not all(got)


@pytest.mark.parametrize(
    "raw", ["+1 (415) 555-2671", "tel:+44-20-7946-0958", "(415) 555-2671", "+15551234567"]
)
def test_python_and_plain_sql_meet_on_one_row(db, raw):
    python_id = dedup.intern_phone_number(db, raw, "US")
    e164 = normalize_phone(raw, "US")
    for spelling in ("+1 415 555 2671", "tel:+1-415-555-2671", e164):
        if normalize_phone(spelling, "US") == e164:
            db.execute_sql(
                "INSERT INTO phone_numbers (raw) VALUES (%s) ON CONFLICT (hash) DO NOTHING",
                (spelling,),
            )
    assert db.execute_sql("SELECT id, e164 FROM phone_numbers").fetchall() == [(python_id, e164)]
