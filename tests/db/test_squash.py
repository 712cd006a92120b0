"""Squashes on a real server: the baseline over the old history, `squash` on it, schema.sql."""

from __future__ import annotations

import difflib
import shutil
import uuid

import pytest

from convdb import migrate as migrate_lib
from convdb.cli.render import dry_run_lines, status_lines
from convdb.exceptions import MigrationError
from convdb.migrate import CORE, Source
from convdb.migrate.history import REPLACED_TABLE
from convdb.migrate.schema import dump
from convdb.migrate.squash import squash
from convdb.testing import query

from ..plugin_helpers import history, package_source
from ..plugin_helpers import sql_module as sql
from ..support import ACTUAL, AFTER_BASELINE, BASELINE, HISTORY_0_1, REPO, STORED


def quiet(_):
    pass


def replaced_rows(url: str, table: str = "migratehistory") -> list[tuple]:
    return query(
        url,
        f"SELECT name, replaced_by, history_id FROM {REPLACED_TABLE} "
        "WHERE history_table = %s ORDER BY history_id",
        (table,),
    )


def fill(url: str) -> None:
    """A little of everything, written in plain SQL so the triggers run."""
    query(
        url,
        """
        INSERT INTO customers (id, name, key) VALUES (1, 'Acme', 'acme');
        INSERT INTO providers (id, customer_id, kind, name) VALUES (1, 1, 'sms', 'twilio');
        INSERT INTO contacts (id, customer_id) VALUES (1, 1);
        INSERT INTO conversations (id, customer_id, key) VALUES (1, 1, 'k');
        INSERT INTO conversation_participants VALUES (1, 1, 'contact');
        INSERT INTO xms_bodies (raw) VALUES ('hello   there');
        INSERT INTO messages (conversation_id, provider_id, direction, xms_body_id, sent_at)
        SELECT 1, 1, 'inbound', id, '2025-01-01Z' FROM xms_bodies;
        """,
    )


def test_the_baseline_replaces_the_whole_old_history():
    assert [n for n in CORE.modules() if n < "017"] == BASELINE
    assert AFTER_BASELINE[0] == "017_drop_superseded_functions"
    for name in BASELINE:
        assert CORE.replaces(name) == HISTORY_0_1.modules()


def test_schema_sql_matches_the_migrations(empty_db_url):
    migrate_lib.run(empty_db_url, sources=[CORE], echo=quiet)
    current = dump(empty_db_url)
    recorded = (REPO / "schema.sql").read_text()
    if current != recorded:
        diff = "".join(
            difflib.unified_diff(
                recorded.splitlines(True), current.splitlines(True), "schema.sql", "migrations"
            )
        )
        pytest.fail(f"schema.sql does not match the migrations: run `make schema`\n{diff[:4000]}")


def test_a_database_of_the_old_history_upgrades_to_the_fresh_schema(empty_db_url, fresh_db_url):
    migrate_lib.run(empty_db_url, sources=[HISTORY_0_1], echo=quiet)
    fill(empty_db_url)
    old_ids = dict(query(empty_db_url, "SELECT name, id FROM migratehistory"))

    (before,) = migrate_lib.status(empty_db_url, sources=[CORE])
    assert before.to_record == BASELINE and before.pending == [*BASELINE, *AFTER_BASELINE]
    assert not before.missing and not before.out_of_order  # old rows are accounted to the squash
    lines = status_lines([before])
    assert "  [x] 016_counters_by_caller  " in "\n".join(lines)
    assert any("replaced by 001_baseline_tables" in line for line in lines)
    assert any("[ ] 001_baseline_tables  (to be recorded" in line for line in lines)
    assert "would be recorded as applied" in "\n".join(
        dry_run_lines(migrate_lib.dry_run(empty_db_url, sources=[CORE]))
    )
    assert history(empty_db_url, "migratehistory") == HISTORY_0_1.modules()  # dry run wrote nothing

    echoed = []
    applied = migrate_lib.run(empty_db_url, sources=[CORE], echo=echoed.append)
    assert applied == [("core", name) for name in AFTER_BASELINE]
    assert sum("recorded" in line for line in echoed) == len(BASELINE)

    # the baseline took the first ids of the rows it replaced: the order stays
    rows = query(empty_db_url, "SELECT id, name FROM migratehistory ORDER BY id")
    assert [name for _, name in rows] == CORE.modules()
    assert [i for i, _ in rows[: len(BASELINE)]] == sorted(old_ids.values())[: len(BASELINE)]
    kept = replaced_rows(empty_db_url)
    assert [(name, i) for name, _, i in kept] == sorted(old_ids.items(), key=lambda kv: kv[1])
    assert {by for _, by, _ in kept} == {"001_baseline_tables"}

    migrate_lib.run(fresh_db_url, sources=[CORE], echo=quiet)
    assert dump(empty_db_url) == dump(fresh_db_url)
    assert query(empty_db_url, "SELECT to_regproc('convdb_messages_inserted_v2')") == [(None,)]
    assert query(empty_db_url, STORED) == query(empty_db_url, ACTUAL)
    assert query(empty_db_url, "SELECT body_text FROM conversation_messages") == [
        ("hello   there",)
    ]

    (after,) = migrate_lib.status(empty_db_url, sources=[CORE])
    assert not after.pending and [n for n, _ in after.covers["001_baseline_tables"]] == list(
        old_ids
    )
    assert any("ran those modules before (15 kept" in line for line in status_lines([after]))
    assert migrate_lib.run(empty_db_url, sources=[CORE], echo=quiet) == []


def test_rolling_back_the_baseline_forgets_the_rows_it_stood_for(empty_db_url):
    migrate_lib.run(empty_db_url, sources=[HISTORY_0_1], echo=quiet)
    migrate_lib.run(empty_db_url, sources=[CORE], echo=quiet)
    # one part of the baseline back: the others still account for the old rows
    migrate_lib.rollback(empty_db_url, source=CORE, count=len(AFTER_BASELINE) + 1, echo=quiet)
    assert len(replaced_rows(empty_db_url)) == 15
    (state,) = migrate_lib.status(empty_db_url, sources=[CORE])
    assert state.pending == [BASELINE[-1], *AFTER_BASELINE]
    assert not state.to_record  # it runs again: its objects are gone
    assert migrate_lib.run(empty_db_url, sources=[CORE], echo=quiet)[0][1] == BASELINE[-1]
    assert "conversation_messages" in {
        r[0] for r in query(empty_db_url, "SELECT viewname FROM pg_views")
    }
    migrate_lib.rollback(empty_db_url, source=CORE, count=len(CORE.modules()), echo=quiet)
    assert replaced_rows(empty_db_url) == [] and history(empty_db_url, "migratehistory") == []


def copy_of_the_old_history(tmp_path, monkeypatch) -> Source:
    """The 15 modules, byte for byte, in a package of their own, as the source ``core``."""
    package = f"convdb_history_{uuid.uuid4().hex[:10]}"
    folder = tmp_path / package
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    for name in HISTORY_0_1.modules():
        shutil.copyfile(HISTORY_0_1.path(name), folder / f"{name}.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    return Source("core", package, "migratehistory")


def test_squash_on_a_database_migrated_with_the_old_history(
    empty_db_url, fresh_db_url, tmp_path, monkeypatch
):
    source = copy_of_the_old_history(tmp_path, monkeypatch)
    migrate_lib.run(empty_db_url, sources=[source], echo=quiet)
    fill(empty_db_url)
    old_schema = dump(empty_db_url)

    written = squash("016", source=source)
    assert written.path.name == "001_squashed_016.py"
    assert written.replaces == HISTORY_0_1.modules()
    assert source.replaces("001_squashed_016") == written.replaces
    (state,) = migrate_lib.status(empty_db_url, sources=[source])
    assert state.to_record == ["001_squashed_016"] and not state.missing

    assert migrate_lib.run(empty_db_url, sources=[source], echo=quiet) == []
    assert history(empty_db_url, "migratehistory") == ["001_squashed_016"]
    assert query(empty_db_url, "SELECT min(id) FROM migratehistory") == [(1,)]
    assert len(replaced_rows(empty_db_url)) == 15
    assert dump(empty_db_url) == old_schema

    # a fresh database runs the squash alone: the replaced files beside it never run
    applied = migrate_lib.run(fresh_db_url, sources=[source], echo=quiet)
    assert applied == [("core", "001_squashed_016")]
    assert dump(fresh_db_url) == old_schema
    (fresh,) = migrate_lib.status(fresh_db_url, sources=[source])
    assert fresh.replaced_pending == dict.fromkeys(HISTORY_0_1.modules(), "001_squashed_016")

    with pytest.raises(MigrationError, match="nothing to squash up to 016_counters_by_caller"):
        squash("016", source=source)

    # the files it replaces can go; both databases carry on
    for name in HISTORY_0_1.modules():
        source.path(name).unlink()
    for url in (empty_db_url, fresh_db_url):
        assert migrate_lib.run(url, sources=[source], echo=quiet) == []
        (st,) = migrate_lib.status(url, sources=[source])
        assert not st.pending and not st.missing

    migrate_lib.rollback(fresh_db_url, source=source, echo=quiet)
    assert "customers" not in query(fresh_db_url, "SELECT tablename FROM pg_tables")
    with pytest.raises(MigrationError, match="table customers \\(1 row\\)"):
        migrate_lib.rollback(empty_db_url, source=source, echo=quiet)
    migrate_lib.rollback(empty_db_url, source=source, force=True, echo=quiet)
    assert replaced_rows(empty_db_url) == []


def test_squash_over_a_partly_applied_range_runs_the_rest_first(
    empty_db_url, fresh_db_url, tmp_path, monkeypatch
):
    source = copy_of_the_old_history(tmp_path, monkeypatch)
    migrate_lib.run(fresh_db_url, sources=[source], echo=quiet)
    migrate_lib.run(empty_db_url, sources=[source], echo=quiet)
    migrate_lib.rollback(empty_db_url, source=source, count=2, echo=quiet)
    squash("016", source=source)
    (state,) = migrate_lib.status(empty_db_url, sources=[source])
    assert state.pending == [
        "015_counter_triggers_by_id",
        "016_counters_by_caller",
        "001_squashed_016",
    ]

    echoed = []
    applied = migrate_lib.run(empty_db_url, sources=[source], echo=echoed.append)
    assert [n for _, n in applied] == ["015_counter_triggers_by_id", "016_counters_by_caller"]
    assert "core: recorded 001_squashed_016 as applied" in echoed[-1]
    assert history(empty_db_url, "migratehistory") == ["001_squashed_016"]
    assert dump(empty_db_url) == dump(fresh_db_url)

    # the same, with the missing modules' files gone: nothing runs, and it says why
    migrate_lib.rollback(empty_db_url, source=source, force=True, echo=quiet)
    migrate_lib.run(empty_db_url, sources=[HISTORY_0_1], echo=quiet)
    migrate_lib.rollback(empty_db_url, source=HISTORY_0_1, count=1, echo=quiet)
    source.path("016_counters_by_caller").unlink()
    with pytest.raises(MigrationError) as info:
        migrate_lib.run(empty_db_url, sources=[source], echo=quiet)
    message = str(info.value)
    assert "core/001_squashed_016 replaces" in message
    assert "016_counters_by_caller neither applied nor on disk" in message
    assert "Restore 016_counters_by_caller.py" in message
    assert len(history(empty_db_url, "migratehistory")) == 14


def test_squash_refuses_what_it_cannot_do(tmp_path, monkeypatch):
    source = package_source(
        tmp_path,
        monkeypatch,
        {
            "001_a": sql("CREATE TABLE a (id int)", "DROP TABLE a"),
            "002_b": sql("CREATE INDEX CONCURRENTLY a_id ON a (id)", transactional=False),
            "003_c": sql("CREATE TABLE c (id int)", "DROP TABLE c"),
            "004_d": sql("CREATE TABLE d (id int)", "DROP TABLE d"),
        },
    )
    with pytest.raises(MigrationError, match="002_b declares TRANSACTIONAL = False"):
        squash("003", source=source)
    with pytest.raises(MigrationError, match="no migration '009' to squash up to"):
        squash("009", source=source)
    with pytest.raises(MigrationError, match="nothing to squash up to 001_a"):
        squash("001_a", source=source)
    source.path("002_b").unlink()
    assert squash("004", source=source).replaces == ["001_a", "003_c", "004_d"]
    with pytest.raises(MigrationError, match="nothing to squash"):
        squash("004", source=source)
