"""``convdb squash --plugin``: a plugin author squashes the example plugin's history."""

from __future__ import annotations

from convdb.migrate.schema import dump

from ..plugin_helpers import TAGS_SOURCE, history, pip_install, plugin_env, public_tables, query
from ..support import run_cli


def test_squash_the_tags_plugin(empty_db_url, fresh_db_url, tmp_path):
    site = pip_install(TAGS_SOURCE, tmp_path / "site")
    migrations = site / "convdb_tags" / "migrations"
    old, fresh = plugin_env(empty_db_url, site), plugin_env(fresh_db_url, site)
    run_cli("convdb", "migrate", env=old, check=True)
    query(empty_db_url, "INSERT INTO tags (name) VALUES ('vip')")

    out = run_cli("convdb", "squash", "--plugin", "tags", "--upto", "002", env=old, check=True)
    written = migrations / "001_squashed_002.py"
    assert f"wrote {written}" in out.stdout
    assert "it replaces 001_tags, 002_conversation_tags of tags" in out.stdout
    assert "delete the replaced files (001_tags.py, 002_conversation_tags.py)" in out.stdout
    assert 'REPLACES = [\n    "001_tags",\n    "002_conversation_tags",\n]' in written.read_text()

    status = run_cli("convdb", "status", "--plugin", "tags", env=old, check=True).stdout
    assert "[ ] 001_squashed_002  (to be recorded as applied without running" in status
    migrated = run_cli("convdb", "migrate", env=old, check=True).stdout
    assert "tags: recorded 001_squashed_002 as applied" in migrated
    assert history(empty_db_url, "migratehistory_tags") == ["001_squashed_002"]
    assert query(empty_db_url, "SELECT name FROM tags") == [("vip",)]

    migrated = run_cli("convdb", "migrate", env=fresh, check=True).stdout
    assert "tags: applied 001_squashed_002" in migrated and "001_tags" not in migrated
    status = run_cli("convdb", "status", "--plugin", "tags", env=fresh, check=True).stdout
    assert "[-] 001_tags  (replaced by 001_squashed_002: never runs on its own)" in status
    assert dump(fresh_db_url) == dump(empty_db_url)

    again = run_cli("convdb", "squash", "--plugin", "tags", "--upto", "002", env=old)
    assert again.returncode == 1 and "nothing to squash up to 002_conversation_tags" in again.stderr
    for name in ("001_tags", "002_conversation_tags"):
        (migrations / f"{name}.py").unlink()
    for env in (old, fresh):
        assert (
            "tags: nothing to migrate" in run_cli("convdb", "migrate", env=env, check=True).stdout
        )

    refused = run_cli("convdb", "rollback", "--plugin", "tags", env=old)
    assert refused.returncode == 1 and "table tags (1 row)" in refused.stderr
    run_cli("convdb", "rollback", "--plugin", "tags", "--force", env=old, check=True)
    assert not {"tags", "conversation_tags"} & public_tables(empty_db_url)
    assert query(empty_db_url, "SELECT count(*) FROM convdb_replaced_migrations") == [(0,)]
