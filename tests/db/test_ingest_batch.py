"""Set-based ingestion of a batch: the same rows as per-event ingestion, and its fallbacks."""

from __future__ import annotations

import json

import psycopg2

from convdb import db as convdb_db
from convdb import dedup, ingest, ingest_batch
from convdb.ingest import ingest_message, parse_message
from convdb.ingest_batch import ingest_messages
from convdb.queue.worker import WorkerConfig, run
from convdb.testing import query

from ..support import example, sms_events, status_counts

# Every row ingestion writes, without surrogate ids (they depend on the order of writes).
SNAPSHOT = {
    "customers": "SELECT key, name FROM customers",
    "providers": "SELECT c.key, p.kind, p.name FROM providers p JOIN customers c "
    "ON c.id = p.customer_id",
    "endpoints": "SELECT c.key, p.name, e.kind, e.address, e.normalized, e.hash "
    "FROM endpoint_mappings e JOIN customers c ON c.id = e.customer_id "
    "JOIN providers p ON p.id = e.provider_id",
    "contacts": "SELECT cu.key, c.display_name, coalesce(ea.lowered, pn.e164) FROM contacts c "
    "JOIN customers cu ON cu.id = c.customer_id "
    "LEFT JOIN contact_addresses ca ON ca.contact_id = c.id "
    "LEFT JOIN email_addresses ea ON ea.id = ca.email_address_id "
    "LEFT JOIN phone_numbers pn ON pn.id = ca.phone_number_id",
    "conversations": "SELECT cu.key, cv.key, cv.thread_key, cv.topic, cv.message_count, "
    "cv.participant_count, cv.last_message_at FROM conversations cv "
    "JOIN customers cu ON cu.id = cv.customer_id",
    "participants": "SELECT cv.customer_id IS NOT NULL, coalesce(cv.key, cv.thread_key), "
    "cp.role, coalesce(ea.lowered, pn.e164) FROM conversation_participants cp "
    "JOIN conversations cv ON cv.id = cp.conversation_id "
    "JOIN contact_addresses ca ON ca.contact_id = cp.contact_id "
    "LEFT JOIN email_addresses ea ON ea.id = ca.email_address_id "
    "LEFT JOIN phone_numbers pn ON pn.id = ca.phone_number_id",
    "messages": "SELECT p.name, m.provider_message_id, coalesce(cv.key, cv.thread_key), "
    "m.direction, eb.normalized, xb.normalized, m.sent_at, m.received_at FROM messages m "
    "JOIN providers p ON p.id = m.provider_id JOIN conversations cv ON cv.id = m.conversation_id "
    "LEFT JOIN email_bodies eb ON eb.id = m.email_body_id "
    "LEFT JOIN xms_bodies xb ON xb.id = m.xms_body_id",
    "attachments": "SELECT m.provider_message_id, u.raw, u.normalized, a.content_type "
    "FROM message_attachments ma JOIN messages m ON m.id = ma.message_id "
    "JOIN attachments a ON a.id = ma.attachment_id JOIN attachment_urls u ON u.id = a.url_id",
    "email_bodies": "SELECT raw, hash, normalized FROM email_bodies",
    "xms_bodies": "SELECT raw, hash, normalized FROM xms_bodies",
    "email_addresses": "SELECT raw, hash, lowered FROM email_addresses",
    "phone_numbers": "SELECT raw, hash, e164 FROM phone_numbers",
    "attachment_urls": "SELECT raw, hash, normalized FROM attachment_urls",
}


def snapshot(url: str) -> dict[str, list]:
    return {name: sorted(query(url, sql), key=repr) for name, sql in SNAPSHOT.items()}


def mixed_payloads() -> list[dict]:
    """SMS both ways, email threads with and without keys, names learnt late, several
    recipients, attachments, duplicate bodies, an empty body and redeliveries."""
    payloads = sms_events(120, customers=4, contacts=25)
    for i in range(80):
        sender = {"address": f"Person.{i % 9}@Example.com"}
        if i % 4 == 3:
            sender["name"] = f"Person {i % 9}"  # not known from their first messages
        to = [{"address": f"support@acme{i % 3}.example"}]
        if i % 5 == 0:
            to.append({"address": f"CC.{i % 2}@Example.com", "name": "Copied"})
        payloads.append(
            example(
                customer={"key": f"mail-{i % 3}", "name": f"Mail customer {i % 3}"},
                message_id=f"mail-{i}",
                sender=sender,
                to=to,
                subject=f"Subject {i % 6}",
                body="" if i == 7 else f"Hello,   reply number {i % 11}\n",
                conversation_key=f"thread-{i % 6}" if i % 2 else None,
                attachments=[
                    {"url": f"https://files.example/{i % 4}.png", "content_type": "image/png"},
                    {"url": "https://files.example/shared.pdf"},
                ]
                if i % 7 == 0
                else None,
            )
        )
    return [*payloads, payloads[3], payloads[130], payloads[150]]  # redelivered


def test_batches_write_exactly_the_rows_of_per_event_ingestion(server, template_db, db, db_url):
    payloads = mixed_payloads()
    messages = [parse_message(p) for p in payloads]
    for msg in messages:
        with db.atomic():
            ingest_message(db, msg)
    expected = snapshot(db_url)

    name = server.create(template=template_db)
    url = server.url(name)
    try:
        batch_db = convdb_db.open_database(url)
        try:
            ids = []
            for start in range(0, len(messages), 37):
                with batch_db.atomic():
                    ids += ingest_messages(batch_db, messages[start : start + 37])
            with batch_db.atomic():  # a whole batch delivered again writes nothing
                assert ingest_messages(batch_db, messages[:50]) == [None] * 50
        finally:
            batch_db.close()
        assert sum(i is not None for i in ids) == len(payloads) - 3
        assert ids[-3:] == [None, None, None]
        assert snapshot(url) == expected
        assert len(expected["messages"]) == len(payloads) - 3
        assert any(name is None for _, name, _ in expected["contacts"])
    finally:
        server.drop(name)


def fill(url: str, payloads: list) -> None:
    conn = psycopg2.connect(url)
    with conn, conn.cursor() as cur:
        for p in payloads:
            cur.execute(
                "INSERT INTO inbound_events (event_type, payload) VALUES (%s, %s)",
                ("message.received", json.dumps(p)),
            )
    conn.close()


def drain(url: str) -> None:
    config = WorkerConfig(burst=True, progress_interval=0, backoff_base=100)
    run(url, config=config, echo=lambda _: None)


def test_a_hash_collision_sends_only_its_event_dead(db_url):
    payloads = sms_events(30)
    victim = payloads[10]["body"] = "a body nobody else has"
    # A different text already holds the victim's hash (stored past the trigger).
    conn = psycopg2.connect(db_url)
    with conn, conn.cursor() as cur:
        cur.execute("SET LOCAL session_replication_role = replica")
        cur.execute(
            "INSERT INTO xms_bodies (raw, hash, normalized) VALUES ('other', %s, 'other')",
            (dedup.dedup_hash(dedup.normalize_body(victim)),),
        )
    conn.close()
    fill(db_url, payloads)
    drain(db_url)
    assert status_counts(db_url) == {"done": 29, "dead": 1}
    (dead,) = query(
        db_url,
        "SELECT payload->>'message_id', last_error FROM inbound_events WHERE status = 'dead'",
    )
    assert dead[0] == "m-10" and "collision" in dead[1]
    assert query(db_url, "SELECT count(*) FROM messages") == [(29,)]


def test_a_constraint_error_in_the_batch_fails_only_its_event(db_url):
    query(
        db_url,
        "ALTER TABLE messages ADD CONSTRAINT test_refuse CHECK (provider_message_id <> 'm-7')",
    )
    fill(db_url, sms_events(25))
    drain(db_url)
    assert status_counts(db_url) == {"done": 24, "dead": 1}  # permanent: dead at once
    (row,) = query(
        db_url,
        "SELECT payload->>'message_id', attempts, last_error FROM inbound_events "
        "WHERE status = 'dead'",
    )
    assert row[:2] == ("m-7", 1) and "test_refuse" in row[2]
    assert query(db_url, "SELECT count(*) FROM messages") == [(24,)]


def test_bad_payloads_in_a_batch_go_dead_and_the_rest_is_ingested_in_one_pass(db_url):
    payloads = sms_events(20)
    payloads[4] = example(message_id=None)
    payloads[12]["sent_at"] = "yesterday"
    fill(db_url, payloads)
    drain(db_url)
    assert status_counts(db_url) == {"done": 18, "dead": 2}
    errors = query(
        db_url, "SELECT last_error FROM inbound_events WHERE status = 'dead' ORDER BY id"
    )
    assert errors == [("message_id: missing (required)",), (errors[1][0],)]
    assert errors[1][0].startswith("sent_at: not an ISO 8601 timestamp")
    assert query(db_url, "SELECT count(*), count(DISTINCT provider_message_id) FROM messages") == [
        (18, 18)
    ]
    assert query(db_url, "SELECT DISTINCT attempts FROM inbound_events") == [(1,)]


def counting_handlers(calls: dict) -> dict:
    """The canonical handlers and batch handlers (keyword arguments of ``run``),
    counting one-event and batch calls."""

    def one(event):
        calls["one"] += 1
        return ingest.handle_message_received(event)

    def batch(events):
        calls["batch"].append(len(events))
        return ingest_batch.handle_batch(events)

    return {"handlers": {"message.received": one}, "batch_handlers": {"message.received": batch}}


def test_a_clean_batch_takes_the_set_based_path_and_a_failing_one_falls_back(db_url):
    fill(db_url, sms_events(120))
    calls = {"one": 0, "batch": []}
    config = WorkerConfig(burst=True, progress_interval=0, batch_size=50)
    counters = run(db_url, **counting_handlers(calls), config=config, echo=lambda _: None)
    assert counters.done == 120 and calls == {"one": 0, "batch": [50, 50, 20]}
    assert query(db_url, "SELECT count(*) FROM messages") == [(120,)]

    query(db_url, "ALTER TABLE messages ADD CONSTRAINT test_refuse CHECK (sent_at > '2000-01-01')")
    payloads = sms_events(10, prefix="late")
    payloads[3]["sent_at"] = "1999-12-31T00:00:00Z"
    fill(db_url, payloads)
    calls = {"one": 0, "batch": []}
    config = WorkerConfig(burst=True, progress_interval=0, batch_size=50, backoff_base=100)
    counters = run(db_url, **counting_handlers(calls), config=config, echo=lambda _: None)
    # The batch was tried whole once, rolled back, then halved until the bad
    # event (the 4th) was alone: 5 (fails), 2, 3 (fails), 1, 2 (fails), 1, 1, 5.
    assert calls == {"one": 3, "batch": [10, 5, 2, 3, 2, 5]}
    assert (counters.done, counters.dead, counters.retried) == (9, 1, 0)
    assert query(db_url, "SELECT count(*) FROM messages") == [(129,)]


# Batch ingestion keeps the conversation counters itself (convdb.counters_by_caller): new
# conversations are born with theirs, the others get one UPDATE per batch.


def assert_counters_right(url: str) -> None:
    from ..support import ACTUAL, STORED

    assert query(url, STORED) == query(url, ACTUAL)


def ingest_in_batches(url: str, messages: list, size: int) -> list:
    batch_db = convdb_db.open_database(url)
    try:
        ids = []
        for start in range(0, len(messages), size):
            with batch_db.atomic():
                ids += ingest_messages(batch_db, messages[start : start + size])
        return ids
    finally:
        batch_db.close()


def test_counters_right_with_and_without_migration_016(empty_db_url):
    """With 016's triggers (the baseline's) the triggers stand aside and the
    batch counts; rolled back to 015 (the first history's) the triggers count
    and the batch does not: never twice, never zero."""
    from convdb import migrate as migrate_lib

    from ..support import HISTORY_0_1

    migrate_lib.run(empty_db_url, sources=[HISTORY_0_1], echo=lambda _: None)
    # today's ingestion writes attachments.size (021, after the first history)
    query(empty_db_url, "ALTER TABLE attachments ADD COLUMN size BIGINT")
    messages = [parse_message(p) for p in mixed_payloads()]
    ingest_in_batches(empty_db_url, messages[:100], 30)  # new conversations, then existing ones
    assert_counters_right(empty_db_url)
    assert query(empty_db_url, "SELECT sum(message_count) FROM conversations") == [(100,)]
    migrate_lib.rollback(empty_db_url, source=HISTORY_0_1, count=1, echo=lambda _: None)
    assert query(empty_db_url, "SELECT to_regproc('convdb_messages_inserted_v3')") == [(None,)]
    ingest_in_batches(empty_db_url, messages[100:], 30)
    assert_counters_right(empty_db_url)
    assert query(empty_db_url, "SELECT sum(message_count) FROM conversations") == [
        (len(messages) - 3,)  # three redeliveries
    ]


def test_disabled_counter_triggers_disable_the_batch_counting_too(db_url):
    conn = psycopg2.connect(db_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("ALTER TABLE messages DISABLE TRIGGER messages_count_inserted")
    conn.close()
    ingest_in_batches(db_url, [parse_message(p) for p in sms_events(40)], 40)
    assert query(
        db_url, "SELECT sum(message_count), sum(participant_count) > 0 FROM conversations"
    ) == [(0, True)]


def test_the_triggers_count_again_after_the_batch_in_the_same_transaction(db):
    messages = [parse_message(p) for p in sms_events(20)]
    with db.atomic():
        ingest_messages(db, messages[:10])
        cursor = db.execute_sql("SELECT current_setting('convdb.counters_by_caller')")
        assert cursor.fetchone() == ("off",)
        ingest_message(db, messages[10])  # the per-event path: counted by the triggers
        db.execute_sql(
            "INSERT INTO messages (provider_id, provider_message_id, conversation_id, "
            "direction, sent_at) SELECT provider_id, 'plain-sql', conversation_id, direction, "
            "sent_at + interval '1 hour' FROM messages ORDER BY id LIMIT 1"
        )
    cursor = db.execute_sql(
        "SELECT count(*) FROM conversations c WHERE message_count <> "
        "(SELECT count(*) FROM messages m WHERE m.conversation_id = c.id) "
        "OR last_message_at IS DISTINCT FROM "
        "(SELECT max(sent_at) FROM messages m WHERE m.conversation_id = c.id)"
    )
    assert cursor.fetchone() == (0,)  # no conversation with a wrong count
    assert db.execute_sql("SELECT count(*) FROM messages").fetchone() == (12,)


def test_a_message_stored_concurrently_into_a_new_conversation_is_recounted(db_url, monkeypatch):
    """The one case where a conversation the batch creates is not born with the
    right counters: another transaction commits one of its messages (same
    provider and message id, threaded elsewhere) after the batch checked for
    it. The batch then recounts that conversation from its rows."""
    # The customer and its provider committed first, so the racing writer sees them.
    ingest_in_batches(db_url, [parse_message(sms_events(1, prefix="before")[0])], 1)
    messages = [parse_message(p) for p in sms_events(6, customers=1, contacts=3, prefix="race")]
    original = ingest_batch._messages

    def racing(db, pairs, conv):
        conn = psycopg2.connect(db_url)
        with conn, conn.cursor() as cur:  # commits before the batch inserts its messages
            cur.execute(
                "WITH elsewhere AS (INSERT INTO conversations (customer_id, key) "
                "SELECT customer_id, 'elsewhere' FROM providers WHERE id = %(p)s RETURNING id) "
                "INSERT INTO messages (provider_id, provider_message_id, conversation_id, "
                "direction, sent_at) SELECT %(p)s, %(k)s, id, 'inbound', '2030-01-01Z' "
                "FROM elsewhere",
                {"p": pairs[-1][2], "k": pairs[-1][0].message_id},
            )
        conn.close()
        return original(db, pairs, conv)

    monkeypatch.setattr(ingest_batch, "_messages", racing)
    ids = ingest_in_batches(db_url, messages, 6)
    assert ids[-1] is None and all(ids[:-1])
    assert_counters_right(db_url)
    # before-0 and race-0/3 share a conversation; race-1/4, race-2 and the
    # racing writer's message each have theirs.
    assert query(db_url, "SELECT count(*), count(DISTINCT conversation_id) FROM messages") == [
        (7, 4)
    ]
