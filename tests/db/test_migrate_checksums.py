"""Checksums of applied migrations: edits are detected, named, refused until accepted."""

from __future__ import annotations

import pytest

from convdb import migrate as migrate_lib
from convdb.exceptions import MigrationError
from convdb.migrate.sources import checksum

from ..plugin_helpers import history, package_source, pip_install, plugin_env, query, write_plugin
from ..plugin_helpers import sql_module as sql
from ..support import run_cli


def quiet(_):
    pass


def test_checksum_ignores_line_endings_and_trailing_whitespace():
    text = "def migrate(m, d):\n    m.sql('x')\n"
    assert checksum(text) == checksum(text.replace("\n", "\r\n"))
    assert checksum(text) == checksum("def migrate(m, d):   \n    m.sql('x')\t\n\n\n")
    assert checksum(text) == checksum("\ufeff" + text)
    assert checksum(text) != checksum(text.replace("'x'", "'y'"))
    assert checksum(text) != checksum("  " + text)  # leading whitespace is Python syntax


PLUGIN = {
    "001_items": sql("CREATE TABLE items (id int)", "DROP TABLE items"),
    "002_items_name": sql(
        "ALTER TABLE items ADD COLUMN name text", "ALTER TABLE items DROP COLUMN name"
    ),
}


def test_edited_applied_migration_is_refused_naming_the_file(empty_db_url, tmp_path):
    site = pip_install(write_plugin(tmp_path, "items", migrations=PLUGIN), tmp_path / "site")
    env = plugin_env(empty_db_url, site)
    run_cli("convdb", "migrate", env=env, check=True)
    folder = site / "convdb_items_test" / "migrations"
    edited = folder / "002_items_name.py"
    edited.write_text(edited.read_text().replace("name text", "name varchar(20)"))
    # formatting noise in the other one is not an edit
    first = folder / "001_items.py"
    first.write_bytes(first.read_text().replace("\n", "   \r\n").encode())
    (folder / "003_items_price.py").write_text(sql("ALTER TABLE items ADD COLUMN price int"))

    refused = run_cli("convdb", "migrate", env=env)
    assert refused.returncode == 1
    assert "items/002_items_name was edited after it was applied" in refused.stderr
    assert str(edited) in refused.stderr
    assert "001_items" not in refused.stderr
    assert "--accept-checksum items/002_items_name" in refused.stderr
    assert history(empty_db_url, "migratehistory_items") == ["001_items", "002_items_name"]

    dry = run_cli("convdb", "migrate", "--dry-run", env=env)
    assert dry.returncode == 1 and "002_items_name was edited" in dry.stderr

    status = run_cli("convdb", "status", "--plugin", "items", env=env, check=True).stdout
    assert "items: 2 applied, 1 pending, 1 changed" in status
    assert "[!] 002_items_name" in status and "CHANGED" in status
    assert "[x] 001_items" in status

    wrong = run_cli("convdb", "migrate", "--accept-checksum", "items/001_items", env=env)
    assert wrong.returncode == 1 and "nothing to accept for items/001_items" in wrong.stderr

    accepted = run_cli(
        "convdb", "migrate", "--accept-checksum", "items/002_items_name", env=env, check=True
    ).stdout
    assert "items: accepted the new checksum of 002_items_name" in accepted
    assert "items: applied 003_items_price" in accepted
    assert "CHANGED" not in run_cli("convdb", "status", env=env, check=True).stdout
    run_cli("convdb", "migrate", env=env, check=True)


def test_checksums_are_recorded_with_each_migration(empty_db_url, tmp_path, monkeypatch):
    source = package_source(tmp_path, monkeypatch, PLUGIN)
    migrate_lib.run(empty_db_url, sources=[source], echo=quiet)
    rows = query(empty_db_url, "SELECT name, checksum FROM migratehistory_src ORDER BY id")
    assert rows == [(name, source.checksum(name)) for name in PLUGIN]
    migrate_lib.rollback(empty_db_url, source=source, echo=quiet)
    assert history(empty_db_url, "migratehistory_src") == ["001_items"]


def test_history_without_checksums_gets_them_next_run(empty_db_url, tmp_path, monkeypatch):
    """What plain pw_migrate leaves: a history table with no checksum column at all."""
    source = package_source(tmp_path, monkeypatch, PLUGIN)
    query(
        empty_db_url,
        "CREATE TABLE migratehistory_src (id serial PRIMARY KEY, name varchar(255), "
        "migrated_at timestamp); INSERT INTO migratehistory_src (name, migrated_at) "
        "VALUES ('001_items', now()); CREATE TABLE items (id int); COMMIT",
    )
    (status,) = migrate_lib.status(empty_db_url, sources=[source])
    assert status.unrecorded == ["001_items"] and status.pending == ["002_items_name"]
    lines = []
    migrate_lib.run(empty_db_url, sources=[source], echo=lines.append)
    assert lines == ["src: recorded checksum of 001_items", "src: applied 002_items_name"]
    rows = query(empty_db_url, "SELECT checksum FROM migratehistory_src ORDER BY id")
    assert rows == [(source.checksum("001_items"),), (source.checksum("002_items_name"),)]


def test_refusal_applies_nothing_in_any_source(empty_db_url, tmp_path, monkeypatch):
    first = package_source(tmp_path / "a", monkeypatch, PLUGIN, name="first")
    second = package_source(
        tmp_path / "b", monkeypatch, {"001_x": sql("CREATE TABLE x (i int)")}, name="second"
    )
    migrate_lib.run(empty_db_url, sources=[first], echo=quiet)
    path = first.path("001_items")
    path.write_text(path.read_text().replace("(id int)", "(id bigint)"))
    # the edited source comes second: it is still checked before the first one runs
    with pytest.raises(MigrationError, match="first/001_items was edited"):
        migrate_lib.run(empty_db_url, sources=[second, first], echo=quiet)
    tables = {r[0] for r in query(empty_db_url, "SELECT tablename FROM pg_tables")}
    assert "x" not in tables and "migratehistory_second" not in tables
