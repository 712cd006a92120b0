"""The example plugin plugins/convdb-tags, installed as its own distribution with pip."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest

from convdb import db as convdb_db
from convdb import migrate as migrate_lib
from convdb import plugins
from convdb.migrate import CORE
from convdb.models import Conversation, Customer, InboundEvent

from ..plugin_helpers import TAGS_SOURCE, history, pip_install, plugin_env, public_tables, query
from ..support import BIN, run_cli


@pytest.fixture(scope="module")
def tags_site(tmp_path_factory):
    root = tmp_path_factory.mktemp("tags")
    return pip_install(TAGS_SOURCE, root / "site")


def test_installed_as_a_wheel_not_a_checkout(tags_site):
    assert (tags_site / "convdb_tags" / "migrations" / "002_conversation_tags.py").is_file()
    entry_points = (tags_site / "convdb_tags-0.1.0.dist-info" / "entry_points.txt").read_text()
    assert "tags = convdb_tags:plugin" in entry_points


def test_cli_lifecycle(empty_db_url, tags_site):
    env = plugin_env(empty_db_url, tags_site)
    listing = run_cli("convdb", "plugins", env=env, check=True).stdout.splitlines()
    assert [line.split()[0] for line in listing[2:]] == ["core", "tags"]
    assert "convdb-tags 0.1.0" in listing[3] and "conversation.tagged" in listing[3]

    out = run_cli("convdb", "migrate", env=env, check=True).stdout
    assert out.index("core: applied") < out.index("tags: applied 001_tags")
    assert out.index("tags: applied 001_tags") < out.index("tags: applied 002_conversation_tags")
    assert {"tags", "conversation_tags"} <= public_tables(empty_db_url)
    assert history(empty_db_url, "migratehistory_tags") == ["001_tags", "002_conversation_tags"]
    fk = query(
        empty_db_url,
        "SELECT confrelid::regclass::text FROM pg_constraint "
        "WHERE conrelid = 'conversation_tags'::regclass AND contype = 'f' ORDER BY 1",
    )
    assert fk == [("conversations",), ("tags",)]

    status = run_cli("convdb", "status", env=env, check=True).stdout
    assert "tags: 2 applied, 0 pending" in status

    refused = run_cli("convdb", "rollback", env=env)
    assert refused.returncode == 1 and "refusing to roll back core: 'tags'" in refused.stderr
    back = run_cli("convdb", "rollback", "--plugin", "tags", env=env, check=True).stdout
    assert "tags: rolled back 002_conversation_tags" in back
    assert "conversation_tags" not in public_tables(empty_db_url)
    assert "tags" in public_tables(empty_db_url)
    assert history(empty_db_url, "migratehistory") == CORE.modules()

    pw = run_cli("pw_migrate", "migrate", env=env, check=True)
    assert "- [x]" not in pw.stdout
    again = run_cli("convdb", "migrate", env=env, check=True).stdout
    assert "tags: applied 002_conversation_tags" in again and "core: nothing to migrate" in again


def test_handler_is_loaded_and_writes_inside_the_transaction(empty_db_url, tags_site, monkeypatch):
    monkeypatch.syspath_prepend(str(tags_site))
    assert [f.name for f in plugins.ordered_plugins()] == ["core", "tags"]
    handler = plugins.load_handlers()["conversation.tagged"]
    assert handler.__module__ == "convdb_tags.handlers"
    assert handler.__code__.co_filename.startswith(str(tags_site))  # the installed copy
    migrate_lib.run(empty_db_url, echo=lambda _: None)
    database = convdb_db.connect(empty_db_url)
    try:
        conversation = Conversation.create(customer=Customer.create(name="Acme"))
        event = InboundEvent.create(
            event_type="conversation.tagged",
            payload={"conversation_id": conversation.id, "tags": ["Urgent", "billing"]},
        )
        with database.atomic():
            assert handler(InboundEvent.get_by_id(event.id)) == 2
        rows = query(
            empty_db_url,
            "SELECT t.name FROM conversation_tags ct JOIN tags t ON t.id = ct.tag_id "
            "WHERE ct.conversation_id = %s ORDER BY 1",
            (conversation.id,),
        )
        assert rows == [("billing",), ("urgent",)]
    finally:
        database.close()


def test_worker_dispatches_to_the_plugin(empty_db_url, tags_site, tmp_path):
    """convdb enqueue + convdb queue-worker --burst, with the plugin installed."""
    env = plugin_env(empty_db_url, tags_site)
    run_cli("convdb", "migrate", env=env, check=True)
    (conversation_id,) = query(
        empty_db_url,
        "WITH c AS (INSERT INTO customers (name) VALUES ('Acme') RETURNING id) "
        "INSERT INTO conversations (customer_id) SELECT id FROM c RETURNING id",
    )[0]
    events = tmp_path / "events.jsonl"
    events.write_text(
        json.dumps({"conversation_id": conversation_id, "tags": ["vip"]})
        + "\n"
        + json.dumps({"conversation_id": conversation_id + 999, "tags": ["vip"]})
        + "\n"
    )
    run_cli("convdb", "enqueue", "conversation.tagged", str(events), env=env, check=True)
    run_cli("convdb", "queue-worker", "--burst", "-q", env=env, check=True)
    statuses = query(empty_db_url, "SELECT status, last_error FROM inbound_events ORDER BY id")
    assert statuses[0] == ("done", None)
    assert statuses[1][0] == "dead" and "does not exist" in statuses[1][1]
    assert query(empty_db_url, "SELECT count(*) FROM conversation_tags") == [(1,)]


def test_the_plugins_own_test_suite(server, tags_site, tmp_path):
    """plugins/convdb-tags/tests, run against the installed plugin as its README says."""
    checkout = tmp_path / "convdb-tags"
    shutil.copytree(TAGS_SOURCE, checkout, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(PYTHONPATH=str(tags_site), TEST_DATABASE_URL=server.admin_url)
    result = subprocess.run(
        [str(BIN / "pytest"), "-q", "-p", "no:cacheprovider", "tests"],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    passed = re.search(r"(\d+) passed", result.stdout)
    assert passed and int(passed.group(1)) >= 4, result.stdout
