"""What may enter the queue: limits, hostile input to `convdb enqueue`, namespaced keys."""

from __future__ import annotations

import json

import pytest

from convdb.exceptions import PayloadError, QueueError
from convdb.queue import Limits, enqueue, enqueue_many, namespaced_key
from convdb.queue.limits import decode, too_deep
from convdb.testing import query, scalar

from ..support import example, fill, run_cli, sms_events, start_worker, status_counts

SMALL = Limits(payload_bytes=2048, depth=8, key_length=64, event_type_length=32)


def count(url: str) -> int:
    return scalar(url, "SELECT count(*) FROM inbound_events")


# --- item 3: limits at enqueue ------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda: enqueue("x", {"body": "b" * 3000}, limits=SMALL, validate=False),
            PayloadError,
            "payload: 3,012 bytes of JSON, over the limit of 2,048 (CONVDB_MAX_PAYLOAD_BYTES)",
        ),
        (
            lambda: enqueue_many(
                "x", [{}, {"a": [[[[[[[[[1]]]]]]]]]}], limits=SMALL, validate=False
            ),
            PayloadError,
            "payload 1: nested deeper than 8 levels (CONVDB_MAX_PAYLOAD_DEPTH)",
        ),
        (
            lambda: enqueue("x", {}, idempotency_key="k" * 9216, limits=SMALL, validate=False),
            QueueError,
            "payload: idempotency key is 9,216 characters long, over the limit of 64 "
            "(CONVDB_MAX_KEY_LENGTH)",
        ),
        (
            lambda: enqueue("t" * 8192, {}, validate=False),
            QueueError,
            "event type is 8,192 characters long, over the limit of 128 "
            "(CONVDB_MAX_EVENT_TYPE_LENGTH)",
        ),
        (
            lambda: enqueue("bad type\n", {}),
            QueueError,
            "event type 'bad type\\n' may only hold letters, digits and _ . : -",
        ),
        (
            lambda: enqueue_many("x", [{}, {"n": float("nan")}], validate=False),
            PayloadError,
            "payload 1: not JSON: Out of range float values are not JSON compliant",
        ),
        (
            lambda: enqueue("x", {"s": "\ud800"}, validate=False),
            PayloadError,
            "payload: contains a lone surrogate (\\ud800), which is not valid Unicode",
        ),
    ],
)
def test_enqueue_refuses_what_breaks_a_limit_and_stores_nothing(db, db_url, call, error, message):
    with pytest.raises(error) as caught:
        call()
    assert str(caught.value) == message
    assert count(db_url) == 0


def test_depth_is_counted_on_the_text_outside_strings():
    assert not too_deep('{"a": "[[[[[[[[[[[[[[[["}', 3)
    assert not too_deep('{"a": [[1], [2], {"b": [3]}]}', 4)
    assert too_deep('{"a": [[1], [2], {"b": [3]}]}', 3)
    assert too_deep('{"a": [[[1]]]}', 3)
    assert too_deep("[" * 100_000 + "]" * 100_000, 64)
    with pytest.raises(PayloadError, match="nested deeper than 64 levels"):
        decode('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}", Limits())


def test_events_over_a_limit_already_in_the_table_fail_alone(db_url):
    query(
        db_url,
        "INSERT INTO inbound_events (event_type, payload, idempotency_key) VALUES "
        "('message.received', jsonb_build_object('body', repeat('x', 2000000)), NULL), "
        "(repeat('t', 8192), '{}', NULL), "
        "('message.received', '{}', repeat('k', 9216))",
    )
    fill(db_url, sms_events(10))
    worker = start_worker(db_url, "--burst", "-q")
    _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    assert status_counts(db_url) == {"done": 10, "dead": 3}
    errors = [
        r[0]
        for r in query(
            db_url, "SELECT last_error FROM inbound_events WHERE status = 'dead' ORDER BY id"
        )
    ]
    assert errors == [
        "payload: 2,000,012 bytes of JSON, over the limit of 1,048,576 (CONVDB_MAX_PAYLOAD_BYTES)",
        "event type is 8,192 characters long, over the limit of 128 (CONVDB_MAX_EVENT_TYPE_LENGTH)",
        "idempotency key is 9,216 characters long, over the limit of 512 (CONVDB_MAX_KEY_LENGTH)",
    ]
    assert query(db_url, "SELECT DISTINCT attempts FROM inbound_events") == [(1,)]


def test_limits_are_settings(db_url, tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps(example()) + "\n" + json.dumps(example(body="b" * 3000)) + "\n")
    env = {"DATABASE_URL": db_url, "CONVDB_MAX_PAYLOAD_BYTES": "2048"}
    result = run_cli("convdb", "enqueue", "message.received", str(path), env=env)
    assert result.returncode == 1
    size = len(json.dumps(example(body="b" * 3000)))
    assert result.stderr.startswith(
        f"Error: {path}, line 2: {size:,} bytes of JSON, over the limit of 2,048 "
        "(CONVDB_MAX_PAYLOAD_BYTES); nothing was stored"
    ), result.stderr
    assert count(db_url) == 0
    env["CONVDB_MAX_PAYLOAD_BYTES"] = "lots"
    bad = run_cli("convdb", "enqueue", "message.received", str(path), env=env)
    assert bad.returncode == 1
    assert bad.stderr.startswith(
        "Error: CONVDB_MAX_PAYLOAD_BYTES='lots': not a whole number (expected 1024 to 268435455)"
    )


# --- item 4: hostile lines for `convdb enqueue` ---------------------------------------------

HOSTILE = {
    "invalid UTF-8": (b'{"a": "caf\xe9"}', "not valid UTF-8 (byte 0xe9 at byte 11)"),
    "lone surrogate": (
        b'{"a": "\\ud800"}',
        "contains a lone surrogate (\\ud800), which is not valid Unicode",
    ),
    "100,000 deep": (
        b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        "nested deeper than 64 levels (CONVDB_MAX_PAYLOAD_DEPTH)",
    ),
    "NaN": (b'{"a": NaN}', "NaN is not valid JSON (JSON has no NaN or Infinity)"),
    "Infinity": (b'{"a": -Infinity}', "-Infinity is not valid JSON (JSON has no NaN or Infinity)"),
    "NUL": (b'{"a": "x\\u0000"}', "contains \\u0000 (NUL), which PostgreSQL cannot store"),
    "huge integer": (b'{"a": ' + b"9" * 5000 + b"}", "not JSON (Exceeds the limit (4300 digits)"),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_cli_enqueue_names_the_hostile_line_and_stores_nothing(db_url, tmp_path, case):
    line, message = HOSTILE[case]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"ok": 1}\n' + line + b'\n{"ok": 3}\n')
    result = run_cli(
        "convdb", "enqueue", "--no-validate", "x.y", str(path), env={"DATABASE_URL": db_url}
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"Error: {path}, line 2: {message}"), result.stderr
    assert first.endswith("; nothing was stored")
    assert count(db_url) == 0


# --- item 5: keys derived by --key-field are namespaced ------------------------------------


def test_key_field_keys_are_namespaced_by_customer_and_provider(db_url, tmp_path):
    same_id = "provider-msg-0001"
    payloads = [
        example(message_id=same_id),
        example(message_id=same_id, customer={"key": "globex", "name": "Globex"}),
        example(message_id=same_id, provider={"kind": "email", "name": "mailgun"}),
        example(message_id=same_id, to=[{"address": "sales@acme.example"}]),  # a redelivery
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in payloads))
    env = {"DATABASE_URL": db_url}
    args = ("convdb", "enqueue", "message.received", "--key-field", "message_id", str(path))
    result = run_cli(*args, env=env, check=True)
    assert "stored 3 event(s) of type message.received; 1 duplicate(s) skipped" in result.stdout
    keys = [r[0] for r in query(db_url, "SELECT idempotency_key FROM inbound_events ORDER BY id")]
    assert keys == [
        '["message.received","acme","email","sendgrid","provider-msg-0001"]',
        '["message.received","globex","email","sendgrid","provider-msg-0001"]',
        '["message.received","acme","email","mailgun","provider-msg-0001"]',
    ]
    worker = start_worker(db_url, "--burst", "-q")
    assert worker.wait(timeout=60) == 0
    assert scalar(db_url, "SELECT count(*) FROM messages") == 3


def test_namespaced_key_is_unambiguous():
    assert namespaced_key("endpoint", 12, "msg_1") == '["endpoint","12","msg_1"]'
    assert namespaced_key("a/b", "c") != namespaced_key("a", "b/c")
    assert namespaced_key('a","b') != namespaced_key("a", "b")
    assert namespaced_key("x", None) == '["x",null]'
