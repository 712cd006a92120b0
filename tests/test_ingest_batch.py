"""Set-based ingestion of a batch: the same rows as per-event ingestion, and its fallbacks."""

from __future__ import annotations

import json

import psycopg2

from convdb import db as convdb_db
from convdb import dedup, ingest, ingest_batch
from convdb.ingest import ingest_message, parse_message
from convdb.ingest_batch import ingest_messages
from convdb.queue.worker import WorkerConfig, run

from .test_queue_fixtures import example, query, sms_events, status_counts

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
    assert status_counts(db_url) == {"done": 24, "pending": 1}
    (row,) = query(
        db_url,
        "SELECT payload->>'message_id', attempts, last_error FROM inbound_events "
        "WHERE status = 'pending'",
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
    """The canonical handlers, counting one-event and batch calls."""

    def one(event):
        calls["one"] += 1
        return ingest.handle_message_received(event)

    def batch(events):
        calls["batch"].append(len(events))
        return ingest_batch.handle_batch(events)

    one.batch = batch
    return {"message.received": one}


def test_a_clean_batch_takes_the_set_based_path_and_a_failing_one_falls_back(db_url):
    fill(db_url, sms_events(120))
    calls = {"one": 0, "batch": []}
    config = WorkerConfig(burst=True, progress_interval=0, batch_size=50)
    counters = run(db_url, handlers=counting_handlers(calls), config=config, echo=lambda _: None)
    assert counters.done == 120 and calls == {"one": 0, "batch": [50, 50, 20]}
    assert query(db_url, "SELECT count(*) FROM messages") == [(120,)]

    query(db_url, "ALTER TABLE messages ADD CONSTRAINT test_refuse CHECK (sent_at > '2000-01-01')")
    payloads = sms_events(10, prefix="late")
    payloads[3]["sent_at"] = "1999-12-31T00:00:00Z"
    fill(db_url, payloads)
    calls = {"one": 0, "batch": []}
    config = WorkerConfig(burst=True, progress_interval=0, batch_size=50, backoff_base=100)
    counters = run(db_url, handlers=counting_handlers(calls), config=config, echo=lambda _: None)
    # The batch was tried whole once, rolled back, then redone event by event.
    assert calls == {"one": 10, "batch": [10]}
    assert (counters.done, counters.retried) == (9, 1)
    assert query(db_url, "SELECT count(*) FROM messages") == [(129,)]
