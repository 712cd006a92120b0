"""``convdb migrate --dry-run``: pending migrations tried in a rolled-back transaction."""

from __future__ import annotations

from convdb import migrate as migrate_lib

from ..plugin_helpers import (
    lock_is_free,
    package_source,
    pip_install,
    plugin_env,
    public_tables,
    write_plugin,
)
from ..plugin_helpers import sql_module as sql
from ..support import run_cli

MODULES = {
    "001_things": sql("CREATE TABLE things (id int, label text)", "DROP TABLE things"),
    "002_things_rows": sql("INSERT INTO things VALUES (1, '100% done')", "DELETE FROM things"),
}


def test_dry_run_prints_sql_and_records_nothing(empty_db_url, tmp_path, monkeypatch):
    source = package_source(tmp_path, monkeypatch, MODULES)
    result = migrate_lib.dry_run(empty_db_url, sources=[source])
    assert result.ok
    assert [(s.source, s.name) for s in result.steps] == [
        ("src", "001_things"),
        ("src", "002_things_rows"),
    ]
    assert result.steps[0].statements == ["CREATE TABLE things (id int, label text)"]
    # exactly what the server received: the %-escaping undone by the driver
    assert result.steps[1].statements == ["INSERT INTO things VALUES (1, '100% done')"]
    assert public_tables(empty_db_url) == set()  # no table, no history table
    assert lock_is_free(empty_db_url)
    assert [n for _, n in migrate_lib.run(empty_db_url, sources=[source], echo=print)] == list(
        MODULES
    )


def test_dry_run_reports_the_failing_migration(empty_db_url, tmp_path, monkeypatch):
    modules = {**MODULES, "003_broken": sql("INSERT INTO no_such_table VALUES (1)")}
    source = package_source(tmp_path, monkeypatch, modules)
    result = migrate_lib.dry_run(empty_db_url, sources=[source])
    assert not result.ok
    assert result.failed.name == "003_broken"
    assert 'relation "no_such_table" does not exist' in result.failed.error
    assert public_tables(empty_db_url) == set()
    assert lock_is_free(empty_db_url)


def test_dry_run_skips_non_transactional_modules(empty_db_url, tmp_path, monkeypatch):
    modules = {
        **MODULES,
        "003_index": sql(
            "CREATE INDEX CONCURRENTLY things_id_idx ON things (id)", transactional=False
        ),
    }
    source = package_source(tmp_path, monkeypatch, modules)
    result = migrate_lib.dry_run(empty_db_url, sources=[source])
    assert result.ok
    assert result.steps[-1].skipped and not result.steps[-1].statements


def test_dry_run_cli_on_core_and_plugin(empty_db_url, tmp_path):
    broken = {**MODULES, "003_broken": sql("ALTER TABLE things ADD COLUMN id int")}
    good = write_plugin(tmp_path / "good", "things", migrations=MODULES)
    bad = write_plugin(tmp_path / "bad", "things", migrations=broken)
    good_site = pip_install(good, tmp_path / "good-site")
    bad_site = pip_install(bad, tmp_path / "bad-site")

    out = run_cli(
        "convdb", "migrate", "--dry-run", env=plugin_env(empty_db_url, good_site), check=True
    ).stdout
    assert "-- core/001_baseline_tables" in out
    assert "CREATE TABLE customers (" in out
    assert "-- things/002_things_rows" in out
    assert "INSERT INTO things VALUES (1, '100% done');" in out
    assert "would apply" in out and "nothing recorded" in out
    assert public_tables(empty_db_url) == set()

    failed = run_cli("convdb", "migrate", "--dry-run", env=plugin_env(empty_db_url, bad_site))
    assert failed.returncode == 1
    assert '-- things/003_broken FAILED: column "id" of relation "things" already exists' in (
        failed.stdout
    )
    assert "dry run: things/003_broken would fail" in failed.stderr
    assert "nothing was recorded" in failed.stderr
    assert public_tables(empty_db_url) == set()
    assert lock_is_free(empty_db_url)
