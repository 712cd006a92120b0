"""Plain ``pw_migrate`` from the repository root, before and after the baseline squash."""

from __future__ import annotations

import shutil

from convdb import migrate as migrate_lib
from convdb.migrate import CORE
from convdb.migrate.schema import dump

from ..plugin_helpers import history, query
from ..support import AFTER_BASELINE, BASELINE, HISTORY_0_1, REPO, run_cli, run_together

LAST_OLD = HISTORY_0_1.modules()[-1]


def quiet(_):
    pass


def old_history(url: str) -> None:
    """A database migrated with the core's first 15 modules, as it was before the baseline."""
    migrate_lib.run(url, sources=[HISTORY_0_1], echo=quiet)


def test_pw_migrate_list_and_migrate_on_a_database_of_the_old_history(empty_db_url):
    old_history(empty_db_url)
    env = {"DATABASE_URL": empty_db_url}
    listed = run_cli("pw_migrate", "list", env=env, check=True)
    for name in BASELINE:
        assert f"- [x] {name}" in listed.stdout
        assert f"convdb: core: recorded {name} as applied" in listed.stderr
    for name in AFTER_BASELINE:
        assert f"- [ ] {name}" in listed.stdout
    assert f"Done: {len(BASELINE)}, Pending: {len(AFTER_BASELINE)}" in listed.stdout
    assert LAST_OLD not in listed.stdout

    migrated = run_cli("pw_migrate", "migrate", env=env, check=True)
    assert "- [x] 017_drop_superseded_functions" in migrated.stdout
    assert history(empty_db_url, "migratehistory") == CORE.modules()
    assert dump(empty_db_url) == (REPO / "schema.sql").read_text()
    again = run_cli("convdb", "migrate", env=env, check=True)
    assert "core: nothing to migrate" in again.stdout
    status = run_cli("convdb", "status", env=env, check=True).stdout
    assert "this database ran those modules before (15 kept" in status


def test_pw_migrate_never_runs_replaced_modules_left_on_disk(empty_db_url, fresh_db_url, tmp_path):
    """The core folder with the old files still beside the baseline (as right after a squash)."""
    directory = tmp_path / "migrations"
    shutil.copytree(REPO / "migrations", directory, ignore=shutil.ignore_patterns("__pycache__"))
    for name in HISTORY_0_1.modules():
        shutil.copyfile(HISTORY_0_1.path(name), directory / f"{name}.py")
    args = ("pw_migrate", "migrate", "--directory", str(directory))

    out = run_cli(*args, env={"DATABASE_URL": fresh_db_url}, check=True).stdout
    assert "001_core_tables" not in out
    assert history(fresh_db_url, "migratehistory") == CORE.modules()

    old_history(empty_db_url)
    run_cli(*args, env={"DATABASE_URL": empty_db_url}, check=True)
    assert history(empty_db_url, "migratehistory") == CORE.modules()
    assert dump(empty_db_url) == dump(fresh_db_url)


def test_pw_migrate_refuses_a_partly_applied_baseline(empty_db_url):
    old_history(empty_db_url)
    migrate_lib.rollback(empty_db_url, source=HISTORY_0_1, echo=quiet)
    env = {"DATABASE_URL": empty_db_url}
    for command in ("list", "migrate"):
        result = run_cli("pw_migrate", command, env=env)
        assert result.returncode == 1
        assert "Traceback" not in result.stderr
        assert "Error: core/001_baseline_tables cannot be recorded" in result.stderr
        assert f"{LAST_OLD} are neither applied nor on disk" in result.stderr
        assert "convdb migrate" in result.stderr
    assert history(empty_db_url, "migratehistory") == HISTORY_0_1.modules()[:-1]
    refused = run_cli("convdb", "migrate", env=env)
    assert refused.returncode == 1 and f"Restore {LAST_OLD}.py" in refused.stderr


def test_concurrent_migrators_record_the_baseline_once(empty_db_url):
    old_history(empty_db_url)
    run_together(
        empty_db_url,
        ("convdb", "migrate"),
        ("pw_migrate", "migrate"),
        ("convdb", "migrate"),
        ("pw_migrate", "list"),
    )
    assert history(empty_db_url, "migratehistory") == CORE.modules()
    kept = query(empty_db_url, "SELECT name FROM convdb_replaced_migrations ORDER BY history_id")
    assert [name for (name,) in kept] == HISTORY_0_1.modules()
