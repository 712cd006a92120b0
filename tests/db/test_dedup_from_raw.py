"""Dedup rows are derived from ``raw``: values supplied by hand, updates, empty values.

The triggers of migration 018 overwrite a normalized value or hash that a
statement supplies with what they derive from ``raw`` (phone numbers SQL
cannot normalize keep the ``e164`` given, after a check of its form).
"""

from __future__ import annotations

import peewee
import pytest

from convdb import dedup
from convdb import migrate as migrate_lib
from convdb.dedup import dedup_hash, normalize_body, normalize_email, normalize_url
from convdb.migrate import CORE
from convdb.pgerrors import sqlstate
from convdb.testing import query

# table: (normalized column, Python normalizer, intern helper, a raw value, another one)
TEXT_TABLES = {
    "email_bodies": ("normalized", normalize_body, dedup.intern_email_body, "Hi  there", "Bye"),
    "xms_bodies": ("normalized", normalize_body, dedup.intern_xms_body, "Hi  there", "Bye"),
    "email_addresses": (
        "lowered",
        normalize_email,
        dedup.intern_email_address,
        "Bob@Example.com",
        "Alice@Example.com",
    ),
    "attachment_urls": (
        "normalized",
        normalize_url,
        dedup.intern_attachment_url,
        " https://x.example/a.png",
        "https://x.example/b.png",
    ),
}


def rows(db, table, column):
    return db.execute_sql(f"SELECT raw, {column}, hash FROM {table} ORDER BY id").fetchall()


def refused(db, sql, params=()) -> str | None:
    """The SQLSTATE that refused ``sql`` (the transaction is rolled back), or None."""
    try:
        with db.atomic():
            db.execute_sql(sql, params)
    except peewee.DatabaseError as exc:
        return sqlstate(exc)
    return None


def test_the_issue_insert_with_its_own_lowered_value(db):
    row_id = db.execute_sql(
        "INSERT INTO email_addresses (raw, lowered) VALUES ('Bob@Example.com', 'not-bob@evil') "
        "RETURNING id"
    ).fetchone()[0]
    assert dedup.intern_email_address(db, "bob@example.com") == row_id
    assert rows(db, "email_addresses", "lowered") == [
        ("Bob@Example.com", "bob@example.com", dedup_hash("bob@example.com"))
    ]


@pytest.mark.parametrize("table", TEXT_TABLES)
def test_supplied_normalized_value_and_hash_are_overwritten(db, table):
    column, normalize, intern, raw, _ = TEXT_TABLES[table]
    expected = normalize(raw)
    db.execute_sql(f"INSERT INTO {table} (raw, {column}, hash) VALUES (%s, 'impostor', 42)", (raw,))
    assert rows(db, table, column) == [(raw, expected, dedup_hash(expected))]
    # Another value's key cannot be claimed either.
    other = "impostor@example.com" if table == "email_addresses" else "impostor"
    db.execute_sql(
        f"INSERT INTO {table} (raw, {column}, hash) VALUES (%s, %s, %s)",
        (other, expected, dedup_hash(expected)),
    )
    assert intern(db, raw) == db.execute_sql(f"SELECT min(id) FROM {table}").fetchone()[0]
    assert [r[1] for r in rows(db, table, column)] == [expected, normalize(other)]


@pytest.mark.parametrize("table", TEXT_TABLES)
def test_update_of_raw_derives_again(db, table):
    column, normalize, intern, raw, new_raw = TEXT_TABLES[table]
    row_id = intern(db, raw)
    db.execute_sql(f"UPDATE {table} SET raw = %s WHERE id = %s", (new_raw, row_id))
    expected = normalize(new_raw)
    assert rows(db, table, column) == [(new_raw, expected, dedup_hash(expected))]
    assert intern(db, new_raw) == row_id
    # Editing the derived columns alone puts them back.
    db.execute_sql(f"UPDATE {table} SET {column} = 'edited', hash = 1 WHERE id = %s", (row_id,))
    db.execute_sql(f"UPDATE {table} SET {column} = NULL WHERE id = %s", (row_id,))
    assert rows(db, table, column) == [(new_raw, expected, dedup_hash(expected))]


@pytest.mark.parametrize("table", TEXT_TABLES)
def test_update_onto_an_existing_value_is_refused(db, table):
    _, _, intern, raw, other = TEXT_TABLES[table]
    first, second = intern(db, raw), intern(db, other)
    state = refused(db, f"UPDATE {table} SET raw = %s WHERE id = %s", (raw, second))
    assert state == "23505"  # unique_violation on hash: two rows for one value
    assert intern(db, raw) == first and intern(db, other) == second


def test_update_into_a_collision_is_reported(db):
    # An impostor planted under the key of "bob@example.com", trigger disabled.
    key = dedup_hash("bob@example.com")
    db.execute_sql("ALTER TABLE email_addresses DISABLE TRIGGER email_addresses_dedup_v2")
    db.execute_sql(
        "INSERT INTO email_addresses (raw, lowered, hash) VALUES ('eve@x', 'eve@x', %s)", (key,)
    )
    db.execute_sql("ALTER TABLE email_addresses ENABLE TRIGGER email_addresses_dedup_v2")
    row_id = dedup.intern_email_address(db, "carol@example.com")
    sql = "UPDATE email_addresses SET raw = 'Bob@Example.com' WHERE id = %s"
    assert refused(db, sql, (row_id,)) == "CV001"


@pytest.mark.parametrize(
    ("table", "raw"),
    [
        ("email_addresses", ""),
        ("email_addresses", " \t\u00a0\u3000"),
        ("attachment_urls", ""),
        ("attachment_urls", "\n"),
    ],
)
def test_empty_addresses_and_urls_are_refused(db, table, raw):
    column, _, intern, existing, _ = TEXT_TABLES[table]
    assert refused(db, f"INSERT INTO {table} (raw) VALUES (%s)", (raw,)) == "CV004"
    sql = f"INSERT INTO {table} (raw, {column}) VALUES (%s, 'given')"
    assert refused(db, sql, (raw,)) == "CV004"
    with pytest.raises(ValueError, match=f"{table}: refusing .*, empty once trimmed"):
        intern(db, raw)
    row_id = intern(db, existing)
    assert refused(db, f"UPDATE {table} SET raw = %s WHERE id = %s", (raw, row_id)) == "CV004"
    assert db.execute_sql(f"SELECT count(*) FROM {table}").fetchone() == (1,)


@pytest.mark.parametrize("table", ["email_bodies", "xms_bodies"])
def test_empty_bodies_are_kept(db, table):
    assert TEXT_TABLES[table][2](db, " ")
    db.execute_sql(f"INSERT INTO {table} (raw) VALUES ('\t') ON CONFLICT (hash) DO NOTHING")
    assert db.execute_sql(f"SELECT normalized FROM {table}").fetchall() == [("",)]


def test_phone_e164_supplied_for_a_number_sql_can_read_is_overwritten(db):
    db.execute_sql("INSERT INTO phone_numbers (raw, e164) VALUES ('+1 415 555 2671', '+1999')")
    assert rows(db, "phone_numbers", "e164") == [
        ("+1 415 555 2671", "+14155552671", dedup_hash("+14155552671"))
    ]


def test_phone_e164_supplied_for_a_national_number_is_kept_if_well_formed(db):
    # Only libphonenumber (Python) can read "(415) 555-2671": the e164 given is kept.
    db.execute_sql(
        "INSERT INTO phone_numbers (raw, e164) VALUES ('(415) 555-2671', '+14155552671')"
    )
    for e164 in ("not-a-number", "", "+1 415 555 2671", "++1"):
        sql = "INSERT INTO phone_numbers (raw, e164) VALUES ('020 7946 0958', %s)"
        assert refused(db, sql, (e164,)) == "CV005", e164
    assert refused(db, "INSERT INTO phone_numbers (raw) VALUES ('020 7946 0958')") == "CV003"
    assert rows(db, "phone_numbers", "e164") == [
        ("(415) 555-2671", "+14155552671", dedup_hash("+14155552671"))
    ]


def test_phone_update_of_raw(db):
    row_id = dedup.intern_phone_number(db, "+1 415 555 2671", "US")
    db.execute_sql("UPDATE phone_numbers SET raw = 'tel:+44-20-7946-0958' WHERE id = %s", (row_id,))
    assert rows(db, "phone_numbers", "e164") == [
        ("tel:+44-20-7946-0958", "+442079460958", dedup_hash("+442079460958"))
    ]
    # To a number SQL cannot read: refused unless the new e164 comes with it.
    sql = "UPDATE phone_numbers SET raw = '020 7946 0959' WHERE id = %s"
    assert refused(db, sql, (row_id,)) == "CV003"
    db.execute_sql(
        "UPDATE phone_numbers SET raw = '020 7946 0959', e164 = '+442079460959' WHERE id = %s",
        (row_id,),
    )
    assert rows(db, "phone_numbers", "e164") == [
        ("020 7946 0959", "+442079460959", dedup_hash("+442079460959"))
    ]
    # Its e164 cannot be swapped for garbage; a hash edit is put back.
    sql = "UPDATE phone_numbers SET e164 = 'x' WHERE id = %s"
    assert refused(db, sql, (row_id,)) == "CV005"
    db.execute_sql("UPDATE phone_numbers SET hash = 7 WHERE id = %s", (row_id,))
    assert rows(db, "phone_numbers", "e164")[0][2] == dedup_hash("+442079460959")


@pytest.mark.parametrize("table", [*TEXT_TABLES, "phone_numbers"])
def test_an_upsert_that_finds_its_row_changes_nothing(db, table):
    """What convdb.dedup runs for a value already stored: same id, nothing rewritten."""
    intern = TEXT_TABLES[table][2] if table in TEXT_TABLES else dedup.intern_phone_number
    raw = TEXT_TABLES[table][3] if table in TEXT_TABLES else "+1 415 555 2671"
    row_id = intern(db, raw)
    before = db.execute_sql(f"SELECT * FROM {table}").fetchall()
    assert intern(db, raw) == row_id
    assert db.execute_sql(f"SELECT * FROM {table}").fetchall() == before


def trigger_definitions(url: str) -> dict[str, str]:
    return dict(
        query(
            url,
            "SELECT tgrelid::regclass::text, pg_get_triggerdef(oid) FROM pg_trigger "
            "WHERE tgname ~ '_dedup_v[0-9]+$'",
        )
    )


def test_rollback_points_the_tables_back_at_the_v1_triggers(db_url):
    names = CORE.modules()
    after = trigger_definitions(db_url)
    assert len(after) == 5 and all("_v2()" in d for d in after.values())
    count = len(names) - names.index("018_dedup_from_raw")
    migrate_lib.rollback(db_url, count=count, echo=lambda _: None)
    before = trigger_definitions(db_url)
    assert before == {
        table: f"CREATE TRIGGER {table}_dedup_v1 BEFORE INSERT OR UPDATE ON public.{table} "
        f"FOR EACH ROW EXECUTE FUNCTION convdb_dedup_{table}_v1()"
        for table in [*TEXT_TABLES, "phone_numbers"]
    }
    # v1 behaviour again: a supplied normalized value is kept.
    sql = "INSERT INTO email_addresses (raw, lowered) VALUES ('Bob@x', 'kept') RETURNING lowered"
    assert query(db_url, sql) == [("kept",)]
    migrate_lib.run(db_url, echo=lambda _: None)
    assert trigger_definitions(db_url) == after
