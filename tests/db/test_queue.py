"""Enqueueing (API and `convdb enqueue`), the claim query's plan, and the operating commands."""

from __future__ import annotations

import datetime as dt
import json
import os
import select
import subprocess

import psycopg2
import pytest

from convdb.exceptions import ConfigError, PayloadError, QueueError
from convdb.queue import QueueManager, enqueue, enqueue_many, queries
from convdb.queue.ops import parse_duration
from convdb.testing import query, scalar

from ..support import BIN, example, run_cli, sms_events, status_counts


def test_enqueue_stores_once_per_idempotency_key(db, db_url):
    first = enqueue("message.received", example(), idempotency_key="sg:1")
    assert isinstance(first, int)
    assert enqueue("message.received", example(), idempotency_key="sg:1") is None
    assert enqueue("message.received", example()) != first  # no key: always stored
    rows = query(db_url, "SELECT event_type, payload, status, attempts FROM inbound_events")
    assert len(rows) == 2
    assert rows[0] == ("message.received", example(), "pending", 0)


def test_enqueue_many_in_one_transaction_with_delay(db, db_url):
    ids = enqueue_many(
        "message.received",
        sms_events(2500),
        idempotency_keys=[f"k{i % 2000}" for i in range(2500)],  # 500 repeats in the batch
        delay=dt.timedelta(minutes=5),
    )
    assert len(ids) == 2000
    due = scalar(
        db_url,
        "SELECT count(*) FROM inbound_events WHERE available_at > now() + interval '4 minutes'",
    )
    assert due == 2000
    # Ids follow the input order (the first occurrence of each key is stored).
    stored = query(db_url, "SELECT id, payload->>'message_id' FROM inbound_events ORDER BY id")
    assert [i for i, _ in stored] == ids
    assert [m for _, m in stored] == [f"m-{i}" for i in range(2000)]


def test_enqueue_many_above_one_statement_is_one_transaction(db, db_url, monkeypatch):
    monkeypatch.setattr("convdb.queue.manager.INSERT_SLICE", 3)
    ids = enqueue_many(
        "x", [{"n": i} for i in range(7)], idempotency_keys=["a", *"bcdefg"], validate=False
    )
    assert len(ids) == 7 and ids == sorted(ids)
    with pytest.raises(PayloadError):
        enqueue_many("x", [{"n": 1}] * 4 + ["not an object"], validate=False)
    # A failing slice (a row PostgreSQL refuses, here by a trigger) stores nothing of the batch.
    query(
        db_url,
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN IF NEW.payload ? 'refused' THEN RAISE 'refused'; END IF; RETURN NEW; END $$; "
        "CREATE TRIGGER refuse BEFORE INSERT ON inbound_events "
        "FOR EACH ROW EXECUTE FUNCTION refuse()",
    )
    with pytest.raises(QueueError, match="could not store events"):
        enqueue_many(
            "x", [{"n": 8}] * 4 + [{"refused": 1}], idempotency_keys=list("hijkl"), validate=False
        )
    assert scalar(db_url, "SELECT count(*) FROM inbound_events") == 7


def test_enqueue_refuses_non_objects_and_stores_nothing(db, db_url):
    with pytest.raises(PayloadError, match="payload 1: expected a JSON object"):
        enqueue_many("x", [{"a": 1}, [1, 2]], validate=False)
    with pytest.raises(QueueError, match="delay must be from 0 to ten years"):
        enqueue("x", {}, delay=-1, validate=False)
    with pytest.raises(PayloadError, match=r"payload 1: contains \\u0000 \(NUL\)"):
        enqueue_many("x", [{"a": 1}, {"nul": "\x00"}], validate=False)  # jsonb refuses \u0000
    assert scalar(db_url, "SELECT count(*) FROM inbound_events") == 0


def test_enqueue_notifies_listeners(db, db_url):
    listener = psycopg2.connect(db_url)
    try:
        listener.autocommit = True
        listener.cursor().execute(f"LISTEN {queries.CHANNEL}")
        enqueue("message.sent", {"a": 1}, validate=False)
        select.select([listener], [], [], 5)
        listener.poll()
        assert [n.payload for n in listener.notifies] == ["message.sent"]
    finally:
        listener.close()


def test_cli_enqueue_from_file_and_stdin(db_url, tmp_path):
    lines = "\n".join(json.dumps(p) for p in sms_events(3)) + "\n\n"
    path = tmp_path / "events.jsonl"
    path.write_text(lines)
    args = [str(BIN / "convdb"), "enqueue", "message.received", "--key-field", "message_id"]
    env = {**os.environ, "DATABASE_URL": db_url}
    from_file = subprocess.run([*args, str(path)], env=env, capture_output=True, text=True)
    assert "stored 3 event(s)" in from_file.stdout, from_file.stderr
    from_stdin = subprocess.run(args, input=lines, env=env, capture_output=True, text=True)
    expected = "stored 0 event(s) of type message.received; 3 duplicate(s) skipped"
    assert expected in from_stdin.stdout, from_stdin.stderr
    assert scalar(db_url, "SELECT count(*) FROM inbound_events") == 3


def test_cli_enqueue_rejects_a_bad_line_and_stores_nothing(db_url, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"a": 1}\n{"b": 2}\n{"c": \n')
    result = run_cli(
        "convdb", "enqueue", "--no-validate", "x.y", str(path), env={"DATABASE_URL": db_url}
    )
    assert result.returncode == 1
    assert f"{path}, line 3: not JSON" in result.stderr
    assert "nothing was stored" in result.stderr
    assert "Traceback" not in result.stderr
    assert scalar(db_url, "SELECT count(*) FROM inbound_events") == 0


def plan_nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", ()):
        yield from plan_nodes(child)


def test_claim_query_uses_the_claim_index(db, db_url):
    enqueue_many("x", [{"n": i} for i in range(5000)], validate=False)
    query(db_url, "UPDATE inbound_events SET status = 'done' WHERE id % 10 <> 0")
    query(db_url, "ANALYZE inbound_events")
    params = {
        "limit": 100,
        "worker": "w",
        "lease": 60,
        "max_attempts": 5,
        "max_bytes": 1 << 22,
        "max_payload_bytes": 1 << 20,
    }
    conn = psycopg2.connect(db_url)
    try:
        with conn.cursor() as cur:
            cur.execute("EXPLAIN (FORMAT JSON) " + queries.CLAIM, params)
            plan = cur.fetchone()[0][0]["Plan"]
    finally:
        conn.rollback()
        conn.close()
    text = json.dumps(plan)
    assert '"Node Type": "Seq Scan"' not in text
    # The walk of the index stops at the batch (LIMIT) and is never sorted; the
    # only sort is of the locked batch itself, for its running totals.
    (limit,) = [n for n in plan_nodes(plan) if n["Node Type"] == "Limit"]
    below = list(plan_nodes(limit))
    assert "inbound_events_claim_idx" in {n.get("Index Name") for n in below}, text
    assert not [n for n in below if n["Node Type"] == "Sort"], text
    sorts = [n for n in plan_nodes(plan) if n["Node Type"] == "Sort"]
    assert [[c.get("CTE Name") for c in n["Plans"]] for n in sorts] == [["due"]], text


def test_claim_takes_due_rows_once_and_counts_the_attempt(db, db_url):
    enqueue_many("x", [{"n": i} for i in range(5)], validate=False)
    enqueue("x", {"later": True}, delay=3600, validate=False)
    manager = QueueManager(db)
    first, _ = manager.claim("w1", 3, 60, 5)
    second, _ = manager.claim("w2", 10, 60, 5)
    # The payloads come as JSON text: the worker decodes each on its own.
    assert [json.loads(e.payload)["n"] for e in first] == [0, 1, 2]
    assert [json.loads(e.payload)["n"] for e in second] == [3, 4]
    assert manager.claim("w3", 10, 60, 5) == ([], 0)
    assert all(e.attempts == 1 and e.status == "processing" for e in first + second)
    # Claimed events are the rows as read: typed fields, nothing dirty.
    event = first[0]
    assert (event.event_type, event.locked_by, event.idempotency_key) == ("x", "w1", None)
    assert event.received_at.tzinfo is not None and event.locked_until > event.received_at
    assert not event.is_dirty()


def test_expired_lease_is_claimed_again_then_goes_dead_at_max_attempts(db, db_url):
    enqueue("x", {"poison": True}, validate=False)
    manager = QueueManager(db)
    for attempt in (1, 2):
        (event,), _ = manager.claim(f"dies-{attempt}", 1, 60, 2)
        assert event.attempts == attempt
        query(db_url, "UPDATE inbound_events SET locked_until = now() - interval '1 second'")
    assert manager.claim("w", 1, 60, 2) == ([], 1)
    (row,) = query(db_url, "SELECT status, attempts, last_error FROM inbound_events")
    assert row[:2] == ("dead", 2)
    assert "lease expired" in row[2]


def expire(url: str) -> None:
    query(url, "UPDATE inbound_events SET locked_until = now() - interval '1 second'")


def test_abandoned_group_is_reclaimed_in_halves_with_its_attempt_given_back(db, db_url):
    enqueue_many("x", [{"n": i} for i in range(8)], validate=False)
    manager = QueueManager(db)
    first, _ = manager.claim("died", 100, 60, 2)
    assert [e.claim_group for e in first] == [8] * 8
    expire(db_url)  # the worker died holding all 8
    halves = [manager.claim(f"w{i}", 100, 60, 2)[0] for i in range(2)]
    assert [[json.loads(e.payload)["n"] for e in half] for half in halves] == [
        [0, 1, 2, 3],
        [4, 5, 6, 7],
    ]
    # Not charged: any of the 8 may have been the culprit.
    assert {(e.attempts, e.claim_group) for half in halves for e in half} == {(1, 4)}
    assert halves[0][0].last_error == (
        "reclaimed: its worker (died) stopped while processing it in a group of 8 "
        "(lease expired); the attempt was given back"
    )
    expire(db_url)  # and again: groups of 2, then 1
    assert [len(manager.claim("w", 100, 60, 2)[0]) for _ in range(5)] == [2, 2, 2, 2, 0]
    expire(db_url)
    alone = [manager.claim("w", 100, 60, 2)[0] for _ in range(9)]
    assert [len(group) for group in alone] == [1] * 8 + [0]
    assert {e.attempts for group in alone for e in group} == {1}
    # Held alone, an event is charged for its worker's death: at max attempts, dead.
    expire(db_url)
    assert [e.attempts for e in manager.claim("w", 100, 60, 2)[0]] == [2]
    expire(db_url)
    assert manager.claim("w", 100, 60, 2) == ([], 1)
    (row,) = query(
        db_url, "SELECT payload, attempts, last_error FROM inbound_events WHERE status = 'dead'"
    )
    assert row[:2] == ({"n": 0}, 2)
    assert row[2] == (
        "abandoned: its worker (w) stopped while processing this event alone (lease expired) "
        "on attempt 2 of 2: the event kills or stalls its worker"
    )


def test_claim_is_bounded_by_bytes_and_never_ships_a_payload_over_the_limit(db, db_url):
    enqueue_many("x", [{"n": i, "pad": "x" * 1000} for i in range(10)], validate=False)
    query(
        db_url,
        "INSERT INTO inbound_events (event_type, payload) "
        "SELECT 'x', jsonb_build_object('huge', repeat('y', 3000000))",
    )
    enqueue("x", {"n": 10}, validate=False)
    manager = QueueManager(db)
    sizes = [e.payload_bytes for e in manager.claim("w", 100, 60, 5, max_bytes=3000)[0]]
    assert len(sizes) == 2 and sum(sizes) <= 3000  # two of ~1 KB, not a third
    one, _ = manager.claim("w", 100, 60, 5, max_bytes=10)
    assert len(one) == 1  # the first row is claimed whatever its size
    # The 3 MB payload, over the limit, weighs nothing and is not read.
    rest, _ = manager.claim("w", 100, 60, 5, max_bytes=8000, max_payload_bytes=1_000_000)
    assert [(e.payload is None, e.payload_bytes > 3_000_000) for e in rest][-2:] == [
        (True, True),
        (False, False),
    ]
    assert len(rest) == 9


def test_cli_stats_retry_dead_and_purge(db_url):
    env = {"DATABASE_URL": db_url}
    query(
        db_url,
        "INSERT INTO inbound_events (event_type, payload, status, attempts, processed_at, "
        "last_error) VALUES "
        "('a', '{}', 'done', 1, now() - interval '8 days', NULL), "
        "('a', '{}', 'done', 1, now() - interval '1 hour', NULL), "
        "('a', '{}', 'dead', 1, now(), 'boom'), ('b', '{}', 'dead', 5, now(), 'bang'), "
        "('b', '{}', 'pending', 2, NULL, 'retrying')",
    )
    stats = run_cli("convdb", "queue", "stats", env=env, check=True).stdout
    assert "a           0        0           2     1" in stats
    assert "retry backlog: 1 pending after a failed attempt" in stats
    retried = run_cli("convdb", "queue", "retry-dead", "--event-type", "b", env=env, check=True)
    assert "1 dead event(s) back to pending" in retried.stdout
    assert status_counts(db_url) == {"done": 2, "dead": 1, "pending": 2}
    dead_id = scalar(db_url, "SELECT id FROM inbound_events WHERE status = 'dead'")
    run_cli("convdb", "queue", "retry-dead", "--id", str(dead_id), env=env, check=True)
    assert scalar(db_url, "SELECT attempts FROM inbound_events WHERE id = %s", (dead_id,)) == 0
    purged = run_cli("convdb", "queue", "purge", "--done-older-than", "7d", env=env, check=True)
    assert "purged 1 done event(s)" in purged.stdout
    assert status_counts(db_url) == {"done": 1, "pending": 3}
    bad = run_cli("convdb", "queue", "purge", "--done-older-than", "soon", env=env)
    assert bad.returncode == 1 and "not a duration: 'soon'" in bad.stderr


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("45s", 45),
        ("30m", 1800),
        ("12h", 43200),
        ("7d", 604800),
        ("2w", 1209600),
        ("1d12h", 129600),
        ("1.5h", 5400),
    ],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "7", "d", "7y", "7d x", "-1d"])
def test_parse_duration_refuses(text):
    with pytest.raises(ConfigError):
        parse_duration(text)
