"""Migrations on a real server: apply, re-apply, round trips, failures, locking, scaffolding."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap

import psycopg2
import pytest

from convdb import migrate as migrate_lib
from convdb.db import closing
from convdb.exceptions import MigrationError
from convdb.migrate import CORE, Source, SourceRouter
from convdb.migrate.lock import open_locked
from convdb.migrate.schema import dump
from convdb.migrate.steps import apply_one

from ..support import BIN, REPO, run_cli, run_together

EXPECTED_TABLES = {
    "customers",
    "providers",
    "endpoint_mappings",
    "contacts",
    "conversations",
    "conversation_participants",
    "messages",
    "attachments",
    "message_attachments",
    "email_bodies",
    "xms_bodies",
    "phone_numbers",
    "email_addresses",
    "attachment_urls",
    "inbound_events",
}
EXPECTED_VIEWS = {"conversation_overview", "conversation_messages", "message_failures"}


def schema_snapshot(url: str) -> dict[str, set]:
    """Every table, view, column, index, constraint, trigger and function of public."""
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            queries = {
                "tables": "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
                "views": "SELECT table_name FROM information_schema.views "
                "WHERE table_schema = 'public'",
                "columns": "SELECT table_name || '.' || column_name || ':' || data_type "
                "|| ':' || is_nullable FROM information_schema.columns "
                "WHERE table_schema = 'public'",
                "indexes": "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'",
                "constraints": "SELECT conname FROM pg_constraint c "
                "JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = 'public'",
                "triggers": "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal",
                "functions": "SELECT proname FROM pg_proc p JOIN pg_namespace n "
                "ON n.oid = p.pronamespace WHERE n.nspname = 'public'",
            }
            snapshot = {}
            for key, sql in queries.items():
                cur.execute(sql)
                snapshot[key] = {row[0] for row in cur.fetchall()}
            return snapshot
    finally:
        conn.close()


def history(url: str, table: str = "migratehistory") -> list[str]:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT name FROM {table} ORDER BY id")
            return [r[0] for r in cur.fetchall()]
    finally:
        conn.close()


def test_apply_all_then_nothing_to_do(empty_db_url):
    applied = migrate_lib.run(empty_db_url, echo=lambda _: None)
    assert [name for _, name in applied] == CORE.modules()
    snap = schema_snapshot(empty_db_url)
    assert snap["tables"] >= EXPECTED_TABLES
    assert snap["views"] == EXPECTED_VIEWS
    assert migrate_lib.run(empty_db_url, echo=lambda _: None) == []
    assert history(empty_db_url) == CORE.modules()


def test_pw_migrate_from_repository_root(empty_db_url):
    first = run_cli("pw_migrate", "migrate", env={"DATABASE_URL": empty_db_url}, check=True)
    assert "Migrating" in first.stdout
    assert history(empty_db_url) == CORE.modules()
    assert schema_snapshot(empty_db_url)["tables"] >= EXPECTED_TABLES
    again = run_cli("pw_migrate", "migrate", env={"DATABASE_URL": empty_db_url}, check=True)
    assert "- [x]" not in again.stdout
    assert history(empty_db_url) == CORE.modules()
    # and convdb agrees there is nothing left
    out = run_cli("convdb", "migrate", env={"DATABASE_URL": empty_db_url}, check=True)
    assert "nothing to migrate" in out.stdout


def test_convdb_migrate_and_status_cli(empty_db_url):
    env = {"DATABASE_URL": empty_db_url}
    before = run_cli("convdb", "status", env=env, check=True)
    assert f"core: 0 applied, {len(CORE.modules())} pending" in before.stdout
    out = run_cli("convdb", "migrate", env=env, check=True)
    for name in CORE.modules():
        assert f"core: applied {name}" in out.stdout
    after = run_cli("convdb", "status", env=env, check=True)
    assert f"core: {len(CORE.modules())} applied, 0 pending" in after.stdout
    assert "[x] 001_baseline_tables" in after.stdout
    # a fresh database ran the baseline itself: nothing of the old history is shown
    assert "replaces 001_core_tables, " in after.stdout
    assert "ran those modules before" not in after.stdout


def test_every_migration_round_trips(empty_db_url):
    """up -> down -> up, one migration at a time, leaves the same schema as a straight run."""
    names = CORE.modules()
    migrate_lib.run(empty_db_url, echo=lambda _: None)
    full = schema_snapshot(empty_db_url)
    full_dump = dump(empty_db_url)
    migrate_lib.rollback(empty_db_url, count=len(names), echo=lambda _: None)
    empty = schema_snapshot(empty_db_url)
    assert empty["tables"] == {"migratehistory"}
    assert not empty["views"] and not empty["triggers"] and not empty["functions"]
    assert history(empty_db_url) == []
    # now step by step: each one applies, rolls back to the previous state, applies again
    for name in names:
        before = schema_snapshot(empty_db_url)
        with closing(open_locked(empty_db_url)) as db:
            apply_one(SourceRouter(db, CORE), name)
        migrate_lib.rollback(empty_db_url, count=1, echo=lambda _: None)
        assert schema_snapshot(empty_db_url) == before, f"rollback of {name} left changes"
        with closing(open_locked(empty_db_url)) as db:
            apply_one(SourceRouter(db, CORE), name)
    assert schema_snapshot(empty_db_url) == full
    assert dump(empty_db_url) == full_dump


@pytest.fixture
def broken_source(tmp_path, monkeypatch):
    """A throwaway migrations package whose second module fails halfway."""
    package = tmp_path / "broken_migrations"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "001_ok.py").write_text(
        textwrap.dedent("""
        def migrate(migrator, database, *, fake=False):
            migrator.sql("CREATE TABLE ok_table (id int)")

        def rollback(migrator, database, *, fake=False):
            migrator.sql("DROP TABLE ok_table")
    """)
    )
    (package / "002_bad.py").write_text(
        textwrap.dedent("""
        def migrate(migrator, database, *, fake=False):
            migrator.sql("CREATE TABLE half_table (id int)")
            migrator.sql("INSERT INTO half_table VALUES (1)")
            migrator.sql("SELECT * FROM no_such_table")

        def rollback(migrator, database, *, fake=False):
            migrator.sql("DROP TABLE half_table")
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return Source("broken", "broken_migrations", "migratehistory_broken")


def test_failing_migration_leaves_nothing_behind(empty_db_url, broken_source):
    with pytest.raises(MigrationError) as info:
        migrate_lib.run(empty_db_url, sources=[broken_source], echo=lambda _: None)
    message = str(info.value)
    assert "broken/002_bad" in message
    assert 'relation "no_such_table" does not exist' in message
    assert info.value.migration == "002_bad"
    snap = schema_snapshot(empty_db_url)
    assert "ok_table" in snap["tables"]
    assert "half_table" not in snap["tables"]
    assert history(empty_db_url, "migratehistory_broken") == ["001_ok"]
    # the advisory lock went with the connection: another run gets it at once
    conn = psycopg2.connect(empty_db_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_lock(%s)", (migrate_lib.MIGRATION_LOCK_KEY,))
            assert cur.fetchone()[0] is True
    finally:
        conn.close()


def test_failing_core_migration_through_cli(empty_db_url, tmp_path):
    """A copy of the core folder plus a bad module, run by pw_migrate's own directory option."""
    directory = tmp_path / "migrations"
    shutil.copytree(REPO / "migrations", directory)
    bad = f"{int(CORE.modules()[-1][:3]) + 1:03d}_bad"
    (directory / f"{bad}.py").write_text(
        "def migrate(migrator, database, *, fake=False):\n"
        "    migrator.sql('CREATE TABLE t8 (id int)')\n"
        "    migrator.sql('ALTER TABLE customers ADD COLUMN name text')\n"
    )
    result = run_cli(
        "pw_migrate",
        "migrate",
        "--directory",
        str(directory),
        env={"DATABASE_URL": empty_db_url},
    )
    assert result.returncode != 0
    assert bad in result.stderr
    assert history(empty_db_url) == CORE.modules()
    assert "t8" not in schema_snapshot(empty_db_url)["tables"]


def test_concurrent_migrators_serialize(empty_db_url):
    run_together(
        empty_db_url,
        ("convdb", "migrate"),
        ("pw_migrate", "migrate"),
        ("convdb", "migrate"),
        ("pw_migrate", "migrate"),
    )
    assert history(empty_db_url) == CORE.modules()  # each migration recorded exactly once
    assert schema_snapshot(empty_db_url)["tables"] >= EXPECTED_TABLES


def test_waiting_migrator_says_what_it_waits_for(empty_db_url):
    holder = psycopg2.connect(empty_db_url)
    try:
        with holder.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (migrate_lib.MIGRATION_LOCK_KEY,))
        import os

        proc = subprocess.Popen(
            [str(BIN / "convdb"), "migrate"],
            cwd=REPO,
            env={**os.environ, "DATABASE_URL": empty_db_url},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = proc.stderr.readline()
        assert "waiting for the migration lock" in line
        assert "backend pid" in line
        assert proc.poll() is None  # still waiting
    finally:
        holder.close()
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert "applied 004_baseline_views_and_queue" in out


def test_pw_migrate_create_scaffolds_a_runnable_module(empty_db_url, tmp_path):
    directory = tmp_path / "migrations"
    shutil.copytree(REPO / "migrations", directory, ignore=shutil.ignore_patterns("__pycache__"))
    result = run_cli("pw_migrate", "create", "add_notes", "--directory", str(directory), check=True)
    highest = max(int(p.name[:3]) for p in directory.glob("[0-9][0-9][0-9]_*.py"))
    created = directory / f"{highest:03d}_add_notes.py"
    assert created.exists(), result.stderr
    # numbered after the highest module, not by counting files (peewee-migrate's default)
    assert highest == int(CORE.modules()[-1][:3]) + 1
    text = created.read_text()
    text = text.replace(
        '"""Write your migrations here."""',
        '"""Write your migrations here."""\n    migrator.sql("CREATE TABLE notes (id int)")',
        1,
    )
    created.write_text(text)
    run_cli(
        "pw_migrate",
        "migrate",
        "--directory",
        str(directory),
        env={"DATABASE_URL": empty_db_url},
        check=True,
    )
    assert history(empty_db_url)[-1] == created.stem
    assert "notes" in schema_snapshot(empty_db_url)["tables"]


def test_create_numbers_after_the_highest(tmp_path, monkeypatch):
    package = tmp_path / "scaffold_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "001_a.py").write_text("")
    (package / "007_b.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    source = Source("scaffold", "scaffold_pkg", "migratehistory_scaffold")
    path = migrate_lib.create("next_step", source=source)
    assert path.name == "008_next_step.py"
    assert "def migrate(migrator" in path.read_text()
    with pytest.raises(MigrationError):
        migrate_lib.create("bad name!", source=source)


def test_duplicate_numbers_are_reported(tmp_path, monkeypatch):
    package = tmp_path / "dup_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "002_a.py").write_text("")
    (package / "002_b.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(MigrationError, match="002_a and 002_b share the number 002"):
        Source("dup", "dup_pkg", "migratehistory_dup").modules()


def test_installed_wheel_migrates_outside_a_checkout(tmp_path, empty_db_url):
    """A non-editable install of the built wheel carries the core migrations and applies them."""
    import os

    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(wheels),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--target",
            str(target),
            str(next(wheels.glob("convdb-*.whl"))),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target), "DATABASE_URL": empty_db_url}
    where = subprocess.run(
        [sys.executable, "-c", "import convdb.migrations as m; print(m.__file__)"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.startswith(str(target))
    result = subprocess.run(
        [sys.executable, "-c", "from convdb.cli import main; main()", "migrate"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert history(empty_db_url) == CORE.modules()
