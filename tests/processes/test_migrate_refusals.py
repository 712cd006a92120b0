"""Commands that must refuse cleanly: names over the file-system limit, rollbacks that drop data."""

from __future__ import annotations

import shutil

from convdb.migrate import CORE

from ..plugin_helpers import history, public_tables, query
from ..support import REPO, run_cli

LONG_NAME = "add_" + "x" * 300


def test_convdb_create_with_a_name_too_long_for_the_file_system():
    before = sorted(p.name for p in (REPO / "migrations").iterdir())
    result = run_cli("convdb", "create", LONG_NAME)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "Error: migration name 'add_xxxx" in result.stderr
    assert "is too long" in result.stderr and "at most 248 characters" in result.stderr
    assert sorted(p.name for p in (REPO / "migrations").iterdir()) == before


def test_pw_migrate_create_with_a_name_too_long_for_the_file_system(tmp_path):
    directory = tmp_path / "migrations"
    shutil.copytree(REPO / "migrations", directory, ignore=shutil.ignore_patterns("__pycache__"))
    before = sorted(p.name for p in directory.iterdir())
    result = run_cli("pw_migrate", "create", LONG_NAME, "--directory", str(directory))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "is too long" in result.stderr
    assert sorted(p.name for p in directory.iterdir()) == before


def test_rollback_that_would_drop_stored_data_asks_first(empty_db_url):
    """`convdb rollback --count <all>` once dropped every table, messages included, silently."""
    env = {"DATABASE_URL": empty_db_url}
    run_cli("convdb", "migrate", env=env, check=True)
    query(
        empty_db_url,
        """
        INSERT INTO customers (name) VALUES ('Acme'), ('Globex');
        INSERT INTO providers (customer_id, kind, name) SELECT id, 'sms', 't' FROM customers;
        INSERT INTO conversations (customer_id) SELECT id FROM customers;
        INSERT INTO messages (conversation_id, provider_id, direction, sent_at)
        SELECT c.id, p.id, 'inbound', now()
          FROM conversations c JOIN providers p USING (customer_id);
        INSERT INTO inbound_events (event_type, payload) VALUES ('message.received', '{}');
        """,
    )
    count = str(len(history(empty_db_url, "migratehistory")))
    refused = run_cli("convdb", "rollback", "--count", count, env=env)
    assert refused.returncode == 1
    assert "Traceback" not in refused.stderr
    assert "it would drop stored data" in refused.stderr
    for line in (
        "table customers (2 rows)",
        "table messages (2 rows)",
        "table conversations (2 rows)",
        "table providers (2 rows)",
        "table inbound_events (1 row)",
    ):
        assert f"  - {line}" in refused.stderr
    assert "email_bodies" not in refused.stderr  # empty tables are no loss
    assert "convdb_search_messages" not in refused.stderr  # derived tables are no loss
    assert "--force" in refused.stderr
    # A TRANSACTIONAL = False module cannot be tried in a transaction: it and
    # the modules after it are rolled back first (each checked, none held
    # data here), and the refusal says so; everything below stays.
    kept = history(empty_db_url, "migratehistory")
    undone = CORE.modules()[len(kept) :]
    assert kept == CORE.modules()[: len(kept)]
    if undone:
        assert not all(CORE.transactional(name) for name in undone)
        assert "rolled back before" in refused.stderr
        assert all(name in refused.stderr for name in undone)
    else:
        assert "nothing was rolled back" in refused.stderr
    assert query(empty_db_url, "SELECT count(*) FROM messages") == [(2,)]

    help_text = run_cli("convdb", "rollback", "--help").stdout
    assert "drops tables or columns that hold rows" in " ".join(help_text.split())

    count = str(len(kept))
    forced = run_cli("convdb", "rollback", "--count", count, "--force", env=env, check=True)
    assert f"OK: {count} migration(s) rolled back" in forced.stdout
    assert public_tables(empty_db_url) == {"migratehistory"}
