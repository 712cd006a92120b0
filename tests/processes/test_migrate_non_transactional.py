"""Modules declaring ``TRANSACTIONAL = False``: CREATE INDEX CONCURRENTLY, and the lock."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from convdb import migrate as migrate_lib
from convdb.exceptions import MigrationError

from ..plugin_helpers import (
    history,
    lock_is_free,
    package_source,
    pip_install,
    plugin_env,
    query,
    write_plugin,
)
from ..plugin_helpers import sql_module as sql
from ..support import BIN, REPO, run_cli


def quiet(_):
    pass


TABLE = sql(
    "CREATE TABLE events (id int, kind text); "
    "INSERT INTO events SELECT g, 'k' || (g % 10) FROM generate_series(1, 20000) g",
    "DROP TABLE events",
)
INDEX_UP = "CREATE INDEX CONCURRENTLY events_kind_idx ON events (kind)"
INDEX_DOWN = "DROP INDEX CONCURRENTLY events_kind_idx"


def index_valid(url: str, name: str) -> bool | None:
    rows = query(
        url, "SELECT indisvalid FROM pg_index WHERE indexrelid::regclass::text = %s", (name,)
    )
    return rows[0][0] if rows else None


def test_concurrent_index_runs_outside_a_transaction(empty_db_url, tmp_path, monkeypatch):
    source = package_source(
        tmp_path,
        monkeypatch,
        {
            "001_events": TABLE,
            "002_events_kind": sql(INDEX_UP, INDEX_DOWN, transactional=False),
        },
    )
    assert not source.transactional("002_events_kind") and source.transactional("001_events")
    migrate_lib.run(empty_db_url, sources=[source], echo=quiet)
    assert index_valid(empty_db_url, "events_kind_idx") is True
    assert history(empty_db_url, "migratehistory_src") == ["001_events", "002_events_kind"]
    migrate_lib.rollback(empty_db_url, source=source, echo=quiet)
    assert index_valid(empty_db_url, "events_kind_idx") is None
    assert history(empty_db_url, "migratehistory_src") == ["001_events"]


def test_without_the_flag_concurrently_fails_cleanly(empty_db_url, tmp_path, monkeypatch):
    source = package_source(
        tmp_path,
        monkeypatch,
        {
            "001_events": TABLE,
            "002_events_kind": sql(INDEX_UP, INDEX_DOWN),
        },
    )
    with pytest.raises(MigrationError, match="cannot run inside a transaction block"):
        migrate_lib.run(empty_db_url, sources=[source], echo=quiet)
    assert history(empty_db_url, "migratehistory_src") == ["001_events"]
    assert lock_is_free(empty_db_url)


def test_failing_non_transactional_module_is_not_recorded_and_frees_the_lock(
    empty_db_url, tmp_path, monkeypatch
):
    source = package_source(
        tmp_path,
        monkeypatch,
        {
            "001_events": TABLE,
            "002_bad": sql(
                "CREATE INDEX CONCURRENTLY x_idx ON no_such_table (id)", transactional=False
            ),
        },
    )
    with pytest.raises(MigrationError) as info:
        migrate_lib.run(empty_db_url, sources=[source], echo=quiet)
    assert "src/002_bad (non-transactional) failed" in str(info.value)
    assert "INVALID" in str(info.value)  # the hint says what may be left behind
    assert history(empty_db_url, "migratehistory_src") == ["001_events"]
    assert lock_is_free(empty_db_url)


def test_pw_migrate_runs_a_non_transactional_module_outside_a_transaction(empty_db_url, tmp_path):
    """Plain ``pw_migrate`` (which wraps every module in a transaction) runs a core
    module that declares TRANSACTIONAL = False the way convdb does, and rolls it back."""
    directory = tmp_path / "migrations"
    shutil.copytree(REPO / "migrations", directory, ignore=shutil.ignore_patterns("__pycache__"))
    top = max(int(p.name[:3]) for p in directory.glob("[0-9][0-9][0-9]_*.py"))
    (directory / f"{top + 1:03d}_events.py").write_text(TABLE)
    (directory / f"{top + 2:03d}_events_kind.py").write_text(
        sql(INDEX_UP, INDEX_DOWN, transactional=False)
    )
    env = {"DATABASE_URL": empty_db_url}
    args = ("--directory", str(directory))
    run_cli("pw_migrate", "migrate", *args, env=env, check=True)
    assert index_valid(empty_db_url, "events_kind_idx") is True
    assert history(empty_db_url, "migratehistory")[-1] == f"{top + 2:03d}_events_kind"
    run_cli("pw_migrate", "rollback", *args, env=env, check=True)
    assert index_valid(empty_db_url, "events_kind_idx") is None
    assert history(empty_db_url, "migratehistory")[-1] == f"{top + 1:03d}_events"
    assert lock_is_free(empty_db_url)


SLOW_INDEX = (
    "from convdb.sqlutil import run_sql\n"
    "TRANSACTIONAL = False\n\n"
    "def migrate(migrator, database, *, fake=False):\n"
    "    run_sql(migrator, 'SELECT pg_sleep(1.5)')\n"
    f"    run_sql(migrator, {INDEX_UP!r})\n"
)


@pytest.mark.slow
def test_waiting_migrator_does_not_deadlock_concurrently(empty_db_url, tmp_path):
    """A second migrator waits for the lock while the first runs CREATE INDEX CONCURRENTLY.

    CONCURRENTLY waits for every transaction older than it; a waiter that
    blocked inside a statement (pg_advisory_lock) would be one, holding the
    lock it waits for: a deadlock. The waiter polls with try-lock instead.
    """
    site = pip_install(
        write_plugin(
            tmp_path, "events", migrations={"001_events": TABLE, "002_events_kind": SLOW_INDEX}
        ),
        tmp_path / "site",
    )
    env = {**os.environ, **plugin_env(empty_db_url, site)}

    def start():
        return subprocess.Popen(
            [str(BIN / "convdb"), "migrate"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    first = start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # until the first one is inside 002
        tables = {r[0] for r in query(empty_db_url, "SELECT tablename FROM pg_tables")}
        if "migratehistory_events" in tables and history(empty_db_url, "migratehistory_events") == [
            "001_events"
        ]:
            break
        time.sleep(0.05)
    second = start()
    out1, err1 = first.communicate(timeout=60)
    out2, err2 = second.communicate(timeout=60)
    assert first.returncode == 0, err1
    assert second.returncode == 0, err2
    assert "events: applied 002_events_kind" in out1
    assert "waiting for the migration lock" in err2
    assert "events: nothing to migrate" in out2
    assert index_valid(empty_db_url, "events_kind_idx") is True
