"""What a rollback refuses to drop: tables and columns that hold rows, found by a trial run."""

from __future__ import annotations

import pytest

from convdb import migrate as migrate_lib
from convdb.exceptions import MigrationError

from ..plugin_helpers import history, package_source, public_tables, query
from ..plugin_helpers import sql_module as sql


def quiet(_):
    pass


def test_a_dropped_column_with_values_is_named(empty_db_url, tmp_path, monkeypatch):
    source = package_source(
        tmp_path,
        monkeypatch,
        {
            "001_items": sql("CREATE TABLE items (id int)", "DROP TABLE items"),
            "002_items_note": sql(
                "ALTER TABLE items ADD COLUMN note text, "
                "ADD COLUMN note_length int GENERATED ALWAYS AS (length(note)) STORED",
                "ALTER TABLE items DROP COLUMN note_length, DROP COLUMN note",
            ),
        },
    )
    migrate_lib.run(empty_db_url, sources=[source], echo=quiet)
    query(empty_db_url, "INSERT INTO items (id, note) VALUES (1, 'a'), (2, 'b'), (3, NULL)")
    with pytest.raises(MigrationError) as info:
        migrate_lib.rollback(empty_db_url, source=source, echo=quiet)
    message = str(info.value)
    assert "refusing to roll back src/002_items_note" in message
    assert "  - column items.note (2 non-NULL values)" in message
    assert "note_length" not in message  # generated from note: nothing stored of its own
    assert "nothing was rolled back" in message
    assert history(empty_db_url, "migratehistory_src") == ["001_items", "002_items_note"]

    query(empty_db_url, "UPDATE items SET note = NULL")  # nothing stored in it any more
    assert migrate_lib.rollback(empty_db_url, source=source, echo=quiet) == ["002_items_note"]
    with pytest.raises(MigrationError, match=r"table items \(3 rows\)"):
        migrate_lib.rollback(empty_db_url, source=source, echo=quiet)
    assert "items" in public_tables(empty_db_url)


def test_a_non_transactional_module_is_rolled_back_unchecked_then_the_rest_is_checked(
    empty_db_url, tmp_path, monkeypatch
):
    source = package_source(
        tmp_path,
        monkeypatch,
        {
            "001_items": sql("CREATE TABLE items (id int)", "DROP TABLE items"),
            "002_items_id": sql(
                "CREATE INDEX CONCURRENTLY items_id ON items (id)",
                "DROP INDEX CONCURRENTLY items_id",
                transactional=False,
            ),
        },
    )
    migrate_lib.run(empty_db_url, sources=[source], echo=quiet)
    query(empty_db_url, "INSERT INTO items VALUES (1)")
    with pytest.raises(MigrationError) as info:
        migrate_lib.rollback(empty_db_url, source=source, count=2, echo=quiet)
    assert "table items (1 row)" in str(info.value)
    assert "002_items_id was rolled back before" in str(info.value)
    assert history(empty_db_url, "migratehistory_src") == ["001_items"]
    undone = migrate_lib.rollback(empty_db_url, source=source, force=True, echo=quiet)
    assert undone == ["001_items"] and "items" not in public_tables(empty_db_url)
