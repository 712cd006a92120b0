# ruff: noqa: RUF001  (look-alike characters are what these tests are about)
"""Dedup triggers against convdb.dedup: one row per normalized value, whoever inserts it.

Every test gets a fresh migrated database (the ``db`` fixture), so tests may
disable a trigger or leave rows behind. Phone numbers in SQL are in
``test_dedup_phone_sql.py``; values supplied by hand and updates in
``test_dedup_from_raw.py``.
"""

from __future__ import annotations

import sys
import unicodedata

import peewee
import pytest

from convdb import dedup
from convdb.dedup import dedup_hash, normalize_body, normalize_email, normalize_phone, normalize_url
from convdb.exceptions import DedupCollisionError
from convdb.pgerrors import sqlstate

# table: (normalized column, Python normalizer, intern helper)
TABLES = {
    "email_bodies": ("normalized", normalize_body, dedup.intern_email_body),
    "xms_bodies": ("normalized", normalize_body, dedup.intern_xms_body),
    "email_addresses": ("lowered", normalize_email, dedup.intern_email_address),
    "attachment_urls": ("normalized", normalize_url, dedup.intern_attachment_url),
    "phone_numbers": ("e164", normalize_phone, dedup.intern_phone_number),
}
TEXT_TABLES = [t for t in TABLES if t != "phone_numbers"]
DO_NOTHING = "INSERT INTO {} (raw) VALUES (%s) ON CONFLICT (hash) DO NOTHING RETURNING id"

CORPUS = [
    "Hello World",
    "  Hello,\t\tWorld \n",
    "Straße STRASSE ẞ",
    "İstanbul ISTANBUL ıi",
    "ΟΔΥΣΣΕΥΣ ΣΟΦΟΣ.ΣΟΦΟΣ Σ ΑΣ'Σ ΑΣ\u0345",
    "cafe\u0301 café \u212b Å q\u0307\u0323 e\u0301\u0327",
    "tab\tnewline\nnbsp\u00a0ideographic\u3000\u3000space\r\n\v\f",
    "\x85next\u2028line\u2029para\u202fnarrow\u205fmath\u1680ogham\x1cfs\x1fus\u2000quad",
    "\u200bzero width is not whitespace\u200b \ufeffBOM",
    "jane.doe+Tag@Example.COM",
    "  Jane.Doe@Bücher.DE \n",
    "ÉCOLE@ÉCOLE.FR",
    "emoji 🙂👍🏽 👨‍👩‍👧 🇩🇪",
    "https://Files.Example/A%20B.png?x=1#Frag",
    "Ǆ ǅ ǆ ﬃ ﬁ \u2126 \u212a Ⅻ ᾼ ᾈ 𐐀 ＡＢＣ",
    "   ",
    "",
]

# Characters whose Unicode properties changed after Python's Unicode version
# (14.0 on Python 3.11); see convdb.dedup. Strings with them are not compared.
KNOWN_UNICODE_DRIFT = {
    "\U0001171e": "AHOM CONSONANT SIGN MEDIAL RA: Mn in 14.0, Mc in 16.0 (PostgreSQL 18), "
    "so it no longer lets a Greek sigma before it be final",
}


def fetch(db, sql, params=None):
    return db.execute_sql(sql, params).fetchall()


def insert_raw(db, table, raw, *, returning=None):
    column = TABLES[table][0]
    sql = f"INSERT INTO {table} (raw) VALUES (%s) RETURNING {returning or f'{column}, hash'}"
    return db.execute_sql(sql, (raw,)).fetchone()


def stored_row(db, table, write, raw):
    """(raw, normalized, hash) of the row ``write`` stores for ``raw``, rolled back after;
    or what refused it: ``'ValueError'`` from Python, the SQLSTATE from the database."""
    column = TABLES[table][0]
    try:
        with db.atomic() as transaction:
            if write == "python":
                row_id = TABLES[table][2](db, raw)
            else:
                (row_id,) = insert_raw(db, table, raw, returning="id")
            got = db.execute_sql(
                f"SELECT raw, {column}, hash FROM {table} WHERE id = %s", (row_id,)
            ).fetchone()
            transaction.rollback()
    except ValueError:
        return "ValueError"
    except peewee.DatabaseError as exc:
        return sqlstate(exc)
    return got


# Both paths refuse what cannot be stored: Python before any SQL, the triggers with CV004.
REFUSED_ALIKE = {("ValueError", "CV004")}


@pytest.mark.parametrize("table", TEXT_TABLES)
def test_plain_sql_insert_matches_python(db, table):
    _, normalize, _ = TABLES[table]
    mismatches = []
    for raw in CORPUS:
        python, sql = stored_row(db, table, "python", raw), stored_row(db, table, "sql", raw)
        if python != sql and (python, sql) not in REFUSED_ALIKE:
            mismatches.append((raw, python, sql))
        expected = normalize(raw)
        if python != "ValueError" and python != (raw, expected, dedup_hash(expected)):
            mismatches.append((raw, expected, python))
    assert mismatches == []


@pytest.mark.parametrize(
    "raw",
    ["+15551234567", " +442079460958\n", "+１５５５１２３４５６７", "\u3000+10000000000\u00a0"],
)
def test_phone_strict_e164_matches_python(db, raw):
    expected = normalize_phone(raw, "US")
    assert insert_raw(db, "phone_numbers", raw) == (expected, dedup_hash(expected))


def test_phone_raw_with_python_e164(db):
    raw = "(415) 555-2671"
    e164 = normalize_phone(raw, "US")
    row = db.execute_sql(
        "INSERT INTO phone_numbers (raw, e164) VALUES (%s, %s) RETURNING id, hash", (raw, e164)
    ).fetchone()
    assert row[1] == dedup_hash("+14155552671")
    assert dedup.intern_phone_number(db, "+1 415-555-2671", "US") == row[0]
    assert db.execute_sql(DO_NOTHING.format("phone_numbers"), ("+14155552671 ",)).fetchone() is None


# Two raw spellings of one normalized value, per table.
SAME = {
    "email_bodies": ("Hello   world", " Hello\u00a0world\n"),
    "xms_bodies": ("Hello   world", " Hello\u00a0world\n"),
    "email_addresses": ("İSTANBUL@Example.com", " i\u0307stanbul@EXAMPLE.com\t"),
    "attachment_urls": ("https://x.example/a.png", "\u3000https://x.example/a.png\n"),
    "phone_numbers": ("+14155552671", "\u00a0+１４１５５５５２６７１ "),
}


@pytest.mark.parametrize("table", TABLES)
def test_same_value_twice_is_one_row(db, table):
    first, second = SAME[table]
    intern = TABLES[table][2]
    sql_id = db.execute_sql(DO_NOTHING.format(table), (first,)).fetchone()[0]
    assert db.execute_sql(DO_NOTHING.format(table), (second,)).fetchone() is None
    assert intern(db, second) == sql_id  # Python finds the row plain SQL wrote
    assert intern(db, first) == sql_id
    assert fetch(db, f"SELECT id, raw FROM {table}") == [(sql_id, first)]


@pytest.mark.parametrize("table", TABLES)
def test_python_first_then_plain_sql(db, table):
    first, second = SAME[table]
    python_id = TABLES[table][2](db, first)
    assert db.execute_sql(DO_NOTHING.format(table), (second,)).fetchone() is None
    assert fetch(db, f"SELECT id FROM {table}") == [(python_id,)]


# The trigger that derives each table's normalized value and hash (migration 018).
DEDUP_TRIGGER = "{}_dedup_v2"

# Per table: a raw value V, and a different normalized value planted under V's hash.
COLLIDING = {
    "email_bodies": ("Hello   world", "impostor body"),
    "xms_bodies": ("see you at 5", "impostor text"),
    "email_addresses": ("Jane@Example.com", "mallory@example.com"),
    "attachment_urls": ("https://x.example/a.png", "https://evil.example/b.png"),
    "phone_numbers": ("+14155552671", "+19995550000"),
}


def plant_impostor(db, table, *, keep_trigger_disabled=False):
    """Store COLLIDING's impostor under the hash of the victim's normalized value."""
    column, normalize, _ = TABLES[table]
    victim, impostor = COLLIDING[table]
    key = dedup_hash(normalize(victim))
    db.execute_sql(f"ALTER TABLE {table} DISABLE TRIGGER {DEDUP_TRIGGER.format(table)}")
    db.execute_sql(
        f"INSERT INTO {table} (raw, hash, {column}) VALUES (%s, %s, %s)",
        (impostor, key, impostor),
    )
    if not keep_trigger_disabled:
        db.execute_sql(f"ALTER TABLE {table} ENABLE TRIGGER {DEDUP_TRIGGER.format(table)}")
    return key


@pytest.mark.parametrize("table", TABLES)
def test_collision_is_reported_not_merged(db, table):
    column, normalize, intern = TABLES[table]
    victim, impostor = COLLIDING[table]
    key = plant_impostor(db, table)

    for sql in (f"INSERT INTO {table} (raw) VALUES (%s)", DO_NOTHING.format(table)):
        with pytest.raises(peewee.DatabaseError) as caught:
            db.execute_sql(sql, (victim,))
        assert sqlstate(caught.value) == "CV001"
        message = str(caught.value)
        assert table in message and str(key) in message
        assert f"'{impostor}'" in message and f"'{normalize(victim)}'" in message

    with pytest.raises(DedupCollisionError) as caught:
        intern(db, victim)
    assert table in str(caught.value) and impostor in str(caught.value)

    assert fetch(db, f"SELECT raw, hash, {column} FROM {table}") == [(impostor, key, impostor)]


@pytest.mark.parametrize("table", ["email_bodies", "phone_numbers"])
def test_collision_missed_by_trigger_is_caught_by_upsert(db, table):
    # What a concurrent insert the trigger could not see would look like.
    victim, impostor = COLLIDING[table]
    plant_impostor(db, table, keep_trigger_disabled=True)
    with pytest.raises(DedupCollisionError, match=f"{table}: 64-bit hash collision"):
        TABLES[table][2](db, victim)
    assert fetch(db, f"SELECT raw FROM {table}") == [(impostor,)]


def test_functions_are_immutable(db):
    rows = fetch(
        db,
        "SELECT proname, provolatile FROM pg_proc "
        "WHERE proname ~ '^convdb_(hash|strip|normalize_[a-z]+|phone_[a-z_]+)_v[0-9]+$' "
        "ORDER BY proname",
    )
    assert [name for name, _ in rows] == [
        "convdb_hash_v1",
        "convdb_normalize_body_v1",
        "convdb_normalize_email_v1",
        "convdb_normalize_phone_v1",
        "convdb_normalize_phone_v2",
        "convdb_normalize_url_v1",
        "convdb_phone_trunk_prefixes_v1",
        "convdb_strip_v1",
    ]
    assert {volatility for _, volatility in rows} == {"i"}


def test_session_settings_do_not_change_results(db):
    # The functions use no time zone and no locale-dependent class; lowercasing
    # names its collation; the triggers pin their search_path.
    (schema,) = db.execute_sql("SELECT current_schema()").fetchone()
    raw = "  İSTANBUL.ΣΟΦΟΣ@Bücher.DE\u00a0"
    expected = normalize_email(raw)
    collations = ["C", "POSIX", "ucs_basic", "tr-x-icu", "tr_TR.utf8", "pg_c_utf8"]
    seen = []
    for collation in collations:
        try:
            with db.atomic():
                got = db.execute_sql(
                    f'SELECT convdb_normalize_email_v1(%s COLLATE "{collation}")', (raw,)
                ).fetchone()[0]
        except peewee.DatabaseError:
            continue  # collation not available on this server
        seen.append(collation)
        assert got == expected, collation
    assert {"C", "POSIX"} <= set(seen)

    with db.atomic() as transaction:
        db.execute_sql("SET LOCAL search_path TO pg_catalog")
        db.execute_sql("SET LOCAL standard_conforming_strings TO off")
        db.execute_sql("SET LOCAL TIME ZONE 'Asia/Kathmandu'")
        row = db.execute_sql(
            f'INSERT INTO "{schema}".email_addresses (raw) VALUES (%s) RETURNING lowered, hash',
            (raw,),
        ).fetchone()
        phone = db.execute_sql(
            f'INSERT INTO "{schema}".phone_numbers (raw) VALUES (%s) RETURNING e164',
            ("\u3000tel:+1 (415) 555-2671\u00a0",),
        ).fetchone()
        transaction.rollback()
    assert row == (expected, dedup_hash(expected))
    assert phone == ("+14155552671",)


def _assigned_code_points():
    for code in range(1, sys.maxunicode + 1):
        char = chr(code)
        if unicodedata.category(char) not in ("Cn", "Cs") and char not in KNOWN_UNICODE_DRIFT:
            yield char


@pytest.mark.slow
def test_every_code_point_normalizes_like_python(db):
    """Each assigned code point alone and in the contexts that matter, SQL vs Python."""
    chars = list(_assigned_code_points())
    decomposed = [
        unicodedata.normalize("NFD", c)
        for c in chars
        if unicodedata.decomposition(c) and not unicodedata.decomposition(c).startswith("<")
    ]
    cases = {
        # alone; as a word end after Σ; between a cased letter and Σ; inside a word
        "email": [s for c in chars for s in (c, f"AΣ{c}", f"A{c}Σ", f"ΑΣ{c}Α")] + decomposed,
        "body": [s for c in chars for s in (c, f"a{c}{c}b")] + decomposed,
        "url": [s for c in chars for s in (c, f"{c}a{c}")],
    }
    python = {"email": normalize_email, "body": normalize_body, "url": normalize_url}
    for kind, inputs in cases.items():
        (got,) = db.execute_sql(
            f"SELECT array_agg(convdb_normalize_{kind}_v1(x) ORDER BY i) "
            "FROM unnest(%s::text[]) WITH ORDINALITY AS u(x, i)",
            (inputs,),
        ).fetchone()
        mismatches = [
            (ascii(raw), ascii(python[kind](raw)), ascii(value))
            for raw, value in zip(inputs, got, strict=True)
            if value != python[kind](raw)
        ]
        assert mismatches[:20] == [], f"{kind}: {len(mismatches)} mismatches"
