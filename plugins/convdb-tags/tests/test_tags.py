"""The tags plugin, installed: discovered, migrated after the core, its handler, rollback."""

from __future__ import annotations

import psycopg2
import pytest

from convdb import PayloadError, db, plugins
from convdb import migrate as convdb_migrate
from convdb.models import Conversation, Customer, InboundEvent


def quiet(_):
    pass


def tables(url: str) -> set[str]:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            return {row[0] for row in cur.fetchall()}
    finally:
        conn.close()


def test_discovered_after_core_with_its_handler():
    ordered = [f.name for f in plugins.ordered_plugins()]
    assert ordered.index("core") < ordered.index("tags")
    tags = next(f for f in plugins.discover() if f.name == "tags")
    assert tags.distribution == "convdb-tags"
    assert tags.plugin.history_table == "migratehistory_tags"
    from convdb_tags.handlers import handle_tagged

    assert plugins.load_handlers()["conversation.tagged"] is handle_tagged


def test_migrate_applies_core_then_tags(empty_db_url):
    applied = convdb_migrate.run(empty_db_url, echo=quiet)
    sources = [source for source, _ in applied]
    assert sources.index("tags") > max(i for i, s in enumerate(sources) if s == "core")
    assert [n for s, n in applied if s == "tags"] == ["001_tags", "002_conversation_tags"]
    assert {"tags", "conversation_tags", "migratehistory_tags"} <= tables(empty_db_url)
    assert convdb_migrate.run(empty_db_url, echo=quiet) == []


def test_handler_tags_a_conversation_in_the_callers_transaction(empty_db_url):
    convdb_migrate.run(empty_db_url, echo=quiet)
    handler = plugins.load_handlers()["conversation.tagged"]
    database = db.connect(empty_db_url)
    try:
        customer = Customer.create(name="Acme", key="acme")
        conversation = Conversation.create(customer=customer)
        event = InboundEvent(
            event_type="conversation.tagged",
            payload={"conversation_id": conversation.id, "tags": ["VIP", " billing ", "vip"]},
        )
        with database.atomic():
            assert handler(event) == 2
        with database.atomic():
            assert handler(event) == 0  # tagging twice changes nothing
        rows = database.execute_sql(
            "SELECT t.name FROM conversation_tags ct JOIN tags t ON t.id = ct.tag_id "
            "WHERE ct.conversation_id = %s ORDER BY t.name",
            (conversation.id,),
        ).fetchall()
        assert [r[0] for r in rows] == ["billing", "vip"]
        # a failing transaction keeps nothing of what the handler wrote
        event.payload = {"conversation_id": conversation.id, "tags": ["urgent"]}
        with pytest.raises(RuntimeError), database.atomic():
            handler(event)
            raise RuntimeError("the worker failed after the handler")
        count = database.execute_sql("SELECT count(*) FROM tags WHERE name = 'urgent'")
        assert count.fetchone()[0] == 0
        for bad in (
            {"conversation_id": conversation.id + 1000, "tags": ["x"]},
            {"conversation_id": conversation.id, "tags": []},
            {"conversation_id": "1", "tags": ["x"]},
            {"conversation_id": conversation.id, "tags": [""]},
            {"conversation_id": conversation.id, "tags": ["x"], "customer": {"key": "globex"}},
        ):
            event.payload = bad
            with pytest.raises(PayloadError), database.atomic():
                handler(event)
    finally:
        database.close()


def test_rollback_of_tags_leaves_the_core(empty_db_url):
    convdb_migrate.run(empty_db_url, echo=quiet)
    with pytest.raises(Exception, match="refusing to roll back core: 'tags'"):
        convdb_migrate.rollback(empty_db_url, echo=quiet)
    undone = convdb_migrate.rollback(empty_db_url, plugin="tags", count=2, echo=quiet)
    assert undone == ["002_conversation_tags", "001_tags"]
    remaining = tables(empty_db_url)
    assert "tags" not in remaining and "conversation_tags" not in remaining
    assert "conversations" in remaining
    assert [n for s, n in convdb_migrate.run(empty_db_url, echo=quiet)] == [
        "001_tags",
        "002_conversation_tags",
    ]


def test_the_validator_is_what_every_door_runs():
    """enqueue refuses what check_tagged refuses, naming the field, before any SQL."""
    from convdb.queue.acceptance import Acceptance, Refused

    acceptance = Acceptance.installed()
    assert acceptance.validators["conversation.tagged"].__name__ == "check_tagged"
    for bad, field in (
        ({"conversation_id": "1", "tags": ["x"]}, "conversation_id"),
        ({"conversation_id": 1, "tags": []}, "conversation.tagged: tags"),
        ({"conversation_id": 1, "tags": ["x"], "customer": "acme"}, "customer"),
    ):
        with pytest.raises(Refused) as refused:
            acceptance.accept("conversation.tagged", bad)
        assert refused.value.message.startswith(field)
    ok = {"conversation_id": 1, "tags": ["x"], "customer": {"key": "acme"}}
    assert acceptance.accept("conversation.tagged", ok).payload == ok
