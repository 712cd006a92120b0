"""The hot queries walk their indexes: a later change cannot silently turn them into scans.

The data is real enough for the planner to choose on its own (no
``enable_seqscan = off``): 50,000 messages over 5,000 conversations loaded by
``bench/loader.py`` and analyzed, and a queue of 20,000 finished events with
a few hundred due. Each test reads ``EXPLAIN (FORMAT JSON)`` and checks the
index that must drive the query, and that no big table is scanned whole.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import psycopg2
import pytest

from bench import loader, queries
from convdb.queue import queries as queue_queries

BIG_TABLES = {
    "messages",
    "conversations",
    "conversation_participants",
    "message_attachments",
    "email_bodies",
    "xms_bodies",
    "inbound_events",
}
SCALE = loader.Scale(customers=5, conversations=5_000, messages=50_000)


@pytest.fixture(scope="module")
def loaded_url(server, template_db) -> Iterator[str]:
    name = server.create(template=template_db, prefix="convdb_plans")
    url = server.url(name)
    loader.load(url, SCALE, echo=lambda _: None)
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(
                "INSERT INTO inbound_events (event_type, payload, status, processed_at) "
                "SELECT 'message.received', '{}', 'done', now() FROM generate_series(1, 20000)"
            )
            cur.execute(
                "INSERT INTO inbound_events (event_type, payload, available_at) "
                "SELECT 'message.received', '{}', now() - g * interval '1 second' "
                "FROM generate_series(1, 300) g"
            )
            cur.execute("VACUUM ANALYZE inbound_events")
    finally:
        conn.close()
    yield url
    server.drop(name)


def plan_of(url: str, sql: str, params) -> dict:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("EXPLAIN (FORMAT JSON) " + sql, params)
            return cur.fetchone()[0][0]["Plan"]
    finally:
        conn.rollback()
        conn.close()


def nodes(plan: dict) -> Iterator[dict]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from nodes(child)


def assert_driven_by(plan: dict, index: str) -> None:
    found = list(nodes(plan))
    scans = [n["Relation Name"] for n in found if n["Node Type"] == "Seq Scan"]
    assert not set(scans) & BIG_TABLES, f"sequential scan of {scans}: {json.dumps(plan)}"
    used = {n.get("Index Name") for n in found}
    assert index in used, f"{index} not used: {json.dumps(plan)}"
    assert not any(n["Node Type"] == "Sort" for n in found), f"sorts: {json.dumps(plan)}"


def heavy_customer(url: str) -> int:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT customer_id FROM conversations GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
            )
            return cur.fetchone()[0]
    finally:
        conn.close()


@pytest.mark.slow
def test_inbox_page_walks_the_inbox_index(loaded_url):
    for customer in (heavy_customer(loaded_url), 2):
        plan = plan_of(loaded_url, queries.INBOX_PAGE, (customer,))
        assert_driven_by(plan, "conversations_inbox_idx")
        assert plan["Node Type"] == "Limit"
        # the counters are in the index (INCLUDE): no heap page is read
        assert plan["Plans"][0]["Node Type"] == "Index Only Scan", json.dumps(plan)


@pytest.mark.slow
def test_conversation_page_walks_the_message_index(loaded_url):
    _, hot = loader.sample_ids(loaded_url, SCALE, 1)
    plan = plan_of(loaded_url, queries.CONVERSATION_PAGE, (hot[0],))
    assert_driven_by(plan, "messages_conversation_sent_at_idx")
    # attachments are counted through their primary key, per shown message
    assert "message_attachments_pkey" in {n.get("Index Name") for n in nodes(plan)}


@pytest.mark.slow
def test_claim_query_walks_the_claim_index(loaded_url):
    params = {
        "limit": 100,
        "max_attempts": 5,
        "worker": "plan-test",
        "lease": 30,
        "max_bytes": 1 << 22,
        "max_payload_bytes": 1 << 20,
    }
    plan = plan_of(loaded_url, queue_queries.CLAIM, params)
    found = list(nodes(plan))
    scans = [n["Relation Name"] for n in found if n["Node Type"] == "Seq Scan"]
    assert "inbound_events" not in scans, json.dumps(plan)
    assert "inbound_events_claim_idx" in {n.get("Index Name") for n in found}, json.dumps(plan)


FOREIGN_KEYS = """
SELECT c.conrelid::regclass::text, c.conname,
       EXISTS (SELECT FROM pg_index i
                WHERE i.indrelid = c.conrelid
                  AND (i.indkey::int2[])[0:cardinality(c.conkey) - 1] = c.conkey
                  AND (i.indpred IS NULL
                       OR pg_get_expr(i.indpred, i.indrelid)
                          = format('(%I IS NOT NULL)', a.attname)))
  FROM pg_constraint c
  JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
 WHERE c.contype = 'f'
"""


def test_every_foreign_key_leads_an_index(loaded_url):
    """Deleting a referenced row (and joining on the key) must not scan the
    referencing table: each foreign key's columns lead an index (a partial
    one on ``col IS NOT NULL`` would do too)."""
    conn = psycopg2.connect(loaded_url)
    try:
        with conn.cursor() as cur:
            cur.execute(FOREIGN_KEYS)
            keys = cur.fetchall()
    finally:
        conn.close()
    assert len(keys) >= 18
    assert [(table, name) for table, name, covered in keys if not covered] == []
