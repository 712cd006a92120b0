"""The batch path in the worker: one set-based call for a batch, fallbacks event by event,
and the counters with the schema before and after migration 023."""

from __future__ import annotations

import json

import psycopg2

from convdb import db as convdb_db
from convdb import dedup, ingest
from convdb import migrate as migrate_lib
from convdb.ingest import ingest_messages, parse_message, writer
from convdb.queue.worker import WorkerConfig, run
from convdb.testing import query

from ..support import ACTUAL, HISTORY_0_1, STORED, example, sms_events, status_counts


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


def test_values_sql_would_refuse_go_dead_at_once_naming_the_field(db_url):
    """Refused by validation, not by the database: no retry, the field named,
    and the batch around them ingested in one pass."""
    payloads = sms_events(20)
    bad = {
        3: ("sent_at", "0001-01-01T00:00:00+02:00"),
        5: ("from", {"address": "\u4e00" * 200 + "@example.com"}),
        8: ("attachments", [{"url": "javascript:alert(1)"}]),
        11: ("attachments", [{"url": "file:///etc/passwd"}]),
        13: ("to", [{"address": "a@b@c"}]),
        17: ("from", {"address": "+1415\x075552671"}),
    }
    for i, (field, value) in bad.items():
        payloads[i] = example(
            message_id=f"bad-{i}", **{"sender" if field == "from" else field: value}
        )
    payloads[17]["provider"] = {"kind": "sms", "name": "twilio"}
    fill(db_url, payloads)
    drain(db_url)
    assert status_counts(db_url) == {"done": 14, "dead": 6}
    dead = query(
        db_url,
        "SELECT payload->>'message_id', attempts, last_error FROM inbound_events "
        "WHERE status = 'dead' ORDER BY id",
    )
    fields = ["sent_at", "from.address", "attachments[0].url", "attachments[0].url"]
    fields += ["to[0].address", "from.address"]
    assert [(k, a, e.split(":")[0]) for k, a, e in dead] == [
        (f"bad-{i}", 1, field) for i, field in zip(bad, fields, strict=True)
    ]
    assert query(db_url, "SELECT count(*) FROM messages") == [(14,)]


def counting_handlers(calls: dict) -> dict:
    """The canonical handlers and batch handlers (keyword arguments of ``run``),
    counting one-event and batch calls."""

    def one(event):
        calls["one"] += 1
        return ingest.handle_message_received(event)

    def batch(events):
        calls["batch"].append(len(events))
        return ingest.handle_batch(events)

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


def assert_counters_right(url: str) -> None:
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


def mixed_messages() -> list:
    """SMS both ways and email threads, a contact on both sides of some
    messages, and redeliveries."""
    payloads = sms_events(60, customers=3, contacts=12)
    for i in range(40):
        us = f"support@acme{i % 2}.example"
        payloads.append(
            example(
                customer={"key": f"mail-{i % 2}", "name": f"Mail {i % 2}"},
                message_id=f"mail-{i}",
                sender={"address": us if i % 9 == 0 else f"person.{i % 5}@example.com"},
                to=[{"address": us}, {"address": f"person.{(i + 1) % 5}@example.com"}],
                conversation_key=f"thread-{i % 4}" if i % 2 else None,
            )
        )
    return [parse_message(p) for p in [*payloads, payloads[3], payloads[70]]]


def test_new_code_on_the_first_history_leaves_the_counting_to_its_triggers(empty_db_url):
    """On a database migrated with the first history (001-016), 016's
    triggers (``_v3``) count as they did, rows of participants rather than
    contacts: this code sets nothing that makes them stand aside, and counts
    nothing itself. (023 recounts them: test_counters.)"""
    migrate_lib.run(empty_db_url, sources=[HISTORY_0_1], echo=lambda _: None)
    # this ingestion writes attachments.size (021), filename (051) and
    # messages.sender_id (053), and looks for early delivery reports (055),
    # all after the first history
    query(empty_db_url, "ALTER TABLE attachments ADD COLUMN size BIGINT, ADD COLUMN filename TEXT")
    query(empty_db_url, "ALTER TABLE messages ADD COLUMN sender_id BIGINT")
    query(
        empty_db_url,
        "ALTER TABLE messages ADD COLUMN status TEXT, ADD COLUMN status_at TIMESTAMPTZ;"
        "CREATE TABLE message_status_reports (provider_id BIGINT, provider_message_id TEXT,"
        " message_id BIGINT, status TEXT, at TIMESTAMPTZ)",
    )
    assert query(empty_db_url, "SELECT to_regproc('convdb_messages_inserted_v3')") != [(None,)]
    ingest_in_batches(empty_db_url, mixed_messages(), 25)
    rows_counted = ACTUAL.replace("count(DISTINCT contact_id)", "count(*)")
    assert query(empty_db_url, STORED) == query(empty_db_url, rows_counted)
    assert query(empty_db_url, "SELECT sum(message_count) FROM conversations") == [(100,)]
    assert query(empty_db_url, STORED) != query(empty_db_url, ACTUAL)  # a contact on both sides


# What code written for migration 016 ran before counting in Python: whether
# each insert counter trigger calls the 016 function (verbatim, but for the
# tables' names as literals).
STAND_ASIDE_016 = """
SELECT set_config('convdb.counters_by_caller', 'on', true), {messages}, {participants}
""".format(
    **{
        name: f"""EXISTS (
    SELECT FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
     WHERE t.tgrelid = '{table}'::regclass AND t.tgname = '{table}_count_inserted'
       AND p.proname = '{function}'
       AND CASE t.tgenabled
               WHEN 'A' THEN true
               WHEN 'O' THEN current_setting('session_replication_role') <> 'replica'
               WHEN 'R' THEN current_setting('session_replication_role') = 'replica'
               ELSE false
           END)"""
        for name, table, function in (
            ("messages", "messages", "convdb_messages_inserted_v3"),
            ("participants", "conversation_participants", "convdb_participants_changed_v3"),
        )
    }
)


def test_code_written_for_016_finds_its_triggers_gone_and_is_counted_by_023s(db):
    """Code written for 016 asks whether the triggers call the ``_v3``
    functions, sets ``convdb.counters_by_caller`` and counts only when they
    do: with 023 they do not, so it counts nothing, and the ``_v4``
    triggers, which ignore that setting, count its rows."""
    with db.atomic():
        ingest_messages(db, mixed_messages()[:10])
    with db.atomic():
        assert db.execute_sql(STAND_ASIDE_016).fetchone() == ("on", False, False)
        db.execute_sql(
            "INSERT INTO messages (provider_id, provider_message_id, conversation_id, "
            "direction, sent_at) SELECT provider_id, 'old-code', conversation_id, direction, "
            "sent_at + interval '1 hour' FROM messages ORDER BY id LIMIT 1"
        )
        db.execute_sql(
            "INSERT INTO conversation_participants (conversation_id, contact_id, role) "
            "SELECT c.id, ct.id, 'contact' FROM conversations c, contacts ct "
            "WHERE c.customer_id = ct.customer_id ON CONFLICT DO NOTHING"
        )
    stored = db.execute_sql(STORED).fetchall()
    assert stored == db.execute_sql(ACTUAL).fetchall()
    assert sum(row[2] for row in stored) == 11


def test_a_batch_writes_each_conversation_once(db):
    """The counter triggers of the participants and the messages a batch
    inserts in one statement update each conversation once, whether the batch
    created it or not (migration 023's ordering)."""

    def updates() -> int:
        sql = "SELECT n_tup_upd FROM pg_stat_xact_user_tables WHERE relname = 'conversations'"
        return db.execute_sql(sql).fetchone()[0]

    messages = [parse_message(p) for p in sms_events(40, customers=2, contacts=10)]
    for half in (messages[:20], messages[20:]):  # 10 new conversations, then the same 10
        with db.atomic():
            before = updates()  # the session's counts not yet flushed included
            ingest_messages(db, half)
            assert updates() - before == 10
    assert db.execute_sql(STORED).fetchall() == db.execute_sql(ACTUAL).fetchall()
    assert db.execute_sql("SELECT sum(participant_count) FROM conversations").fetchone() == (20,)


def test_a_message_stored_concurrently_is_left_out_and_counted_once(db_url, monkeypatch):
    """Another transaction commits one of the batch's messages (same provider
    and message id, threaded elsewhere) after the batch looked for it: the
    batch's insert skips it (None), and the counters still add up."""
    # The customer and its provider committed first, so the racing writer sees them.
    ingest_in_batches(db_url, [parse_message(sms_events(1, prefix="before")[0])], 1)
    messages = [parse_message(p) for p in sms_events(6, customers=1, contacts=3, prefix="race")]
    original = writer._messages

    def racing(db, batch, people):
        conn = psycopg2.connect(db_url)
        with conn, conn.cursor() as cur:  # commits before the batch inserts its messages
            cur.execute(
                "WITH elsewhere AS (INSERT INTO conversations (customer_id, key) "
                "SELECT customer_id, 'elsewhere' FROM providers WHERE id = %(p)s RETURNING id) "
                "INSERT INTO messages (provider_id, provider_message_id, conversation_id, "
                "direction, sent_at) SELECT %(p)s, %(k)s, id, 'inbound', '2030-01-01Z' "
                "FROM elsewhere",
                {"p": batch[-1].provider, "k": batch[-1].msg.message_id},
            )
        conn.close()
        return original(db, batch, people)

    monkeypatch.setattr(writer, "_messages", racing)
    ids = ingest_in_batches(db_url, messages, 6)
    assert ids[-1] is None and all(ids[:-1])
    assert_counters_right(db_url)
    # before-0 and race-0/3 share a conversation; race-1/4, race-2 and the
    # racing writer's message each have theirs.
    assert query(db_url, "SELECT count(*), count(DISTINCT conversation_id) FROM messages") == [
        (7, 4)
    ]
