"""Delivery status with real processes (issue 17, points 3 and 4).

- Four ``convdb queue-worker`` processes drain, at once and in small batches,
  a shuffled queue of messages and their reports (many early): every message
  ends in the state its set of reports defines, every report is kept once,
  none waits, none is dead.
- A real ``convdb serve`` takes Twilio status callbacks for a message convdb
  does not hold yet; a real worker keeps them as early reports (``convdb
  queue stats`` counts them), and applies them when ``message.sent`` arrives.
"""

from __future__ import annotations

import datetime as dt
import json
import random

import pytest

from convdb.ingest.status import merge
from convdb.testing import query

from ..provider_support import twilio_request
from ..serve_support import ServeProcess, add_endpoint
from ..support import fill, run_cli, run_together, status_counts

pytestmark = pytest.mark.slow

T0 = dt.datetime(2026, 1, 5, 10, 0, tzinfo=dt.UTC)
WORDS = ["queued", "sent", "delivered", "failed", "read", None]


def sent(i: int) -> dict:
    return {
        "customer": {"key": f"c{i % 3}", "name": f"Customer {i % 3}"},
        "provider": {"kind": "sms", "name": "twilio"},
        "message_id": f"SM{i:04d}",
        "from": {"address": f"+1212555{i % 3:04d}"},
        "to": [{"address": f"+1415555{i:04d}"}],
        "body": f"order {i} shipped",
        "sent_at": "2026-01-05T09:59:00Z",
    }


def reports(i: int, rng: random.Random) -> list[dict]:
    out = []
    for n in range(rng.randint(1, 6)):
        status = rng.choice(WORDS)
        out.append(
            {
                "customer": {"key": f"c{i % 3}"},
                "provider": {"kind": "sms", "name": "twilio"},
                "message_id": f"SM{i:04d}",
                "status": status,
                "word": status or "deferred",
                "at": (T0 + dt.timedelta(minutes=rng.randint(0, 5))).isoformat(),
                "detail": f"r{n}",
            }
        )
    return out


def expected(payloads: list[dict]):
    state = None
    for p in payloads:
        if p["status"] is not None:
            state = merge(state, (p["status"], dt.datetime.fromisoformat(p["at"])))
    return state


def test_concurrent_workers_end_in_the_state_of_the_set_of_reports(db_url):
    rng = random.Random(17)
    messages = 120
    queue: list[tuple[str, dict]] = []
    by_message = {}
    for i in range(messages):
        mine = reports(i, rng)
        by_message[f"SM{i:04d}"] = mine
        queue.append(("message.sent", sent(i)))
        queue.extend(("message.status", p) for p in mine)
        queue.extend(("message.status", p) for p in rng.sample(mine, k=min(2, len(mine))))
    rng.shuffle(queue)  # reports before and after their message, duplicates anywhere
    for event_type, payload in queue:
        fill(db_url, [payload], event_type)
    worker = ("convdb", "queue-worker", "--burst", "-q", "--batch-size", "7")
    run_together(db_url, worker, worker, worker, worker, timeout=300)
    assert status_counts(db_url) == {"done": len(queue)}
    got = {
        k: (s, at)
        for k, s, at in query(db_url, "SELECT provider_message_id, status, status_at FROM messages")
    }
    for message_id, payloads in by_message.items():
        want = expected(payloads)
        assert got[message_id] == (want or (None, None)), message_id
    distinct = {(p["message_id"], p["word"], p["at"]) for ps in by_message.values() for p in ps}
    assert query(db_url, "SELECT count(*) FROM message_status_reports") == [(len(distinct),)]
    assert query(
        db_url, "SELECT count(*) FROM message_status_reports WHERE message_id IS NULL"
    ) == [(0,)]


TOKEN = "5d4c3b2a19087f6e5d4c3b2a19087f6e"


def test_early_twilio_callbacks_wait_in_a_real_worker_until_the_message_arrives(db_url):
    path = add_endpoint(
        db_url, provider_name="twilio", kind="sms", adapter="twilio", secret_ref="env:TEST_TOK"
    )
    public = "https://hooks.example.com"
    sid = "SM" + "e1" * 16
    env = {"TEST_TOK": TOKEN, "CONVDB_PUBLIC_URL": public}
    with ServeProcess(db_url, env=env) as server, server.client() as client:
        for word in ("delivered", "sent"):
            params = [
                ("AccountSid", "AC" + "0f" * 16),
                ("From", "+12125550100"),
                ("MessageSid", sid),
                ("MessageStatus", word),
                ("SmsSid", sid),
                ("SmsStatus", word),
                ("To", "+14155550123"),
            ]
            body, headers = twilio_request(public + path, params, TOKEN)
            assert client.post(path, content=body, headers=headers).status_code == 200
        assert server.stop() == 0
    env = {"DATABASE_URL": db_url}
    run_cli("convdb", "queue-worker", "--burst", "-q", env=env, check=True)
    assert status_counts(db_url) == {"done": 2}  # kept: neither retried nor dead
    assert query(db_url, "SELECT count(*) FROM messages") == [(0,)]
    stats = run_cli("convdb", "queue", "stats", env=env, check=True).stdout
    assert "early delivery reports (waiting for their message): 2" in stats
    payload = {
        "customer": {"key": "acme", "name": "Acme, Inc."},
        "provider": {"kind": "sms", "name": "twilio"},
        "message_id": sid,
        "from": {"address": "+12125550100"},
        "to": [{"address": "+14155550123"}],
        "body": "See you at 5",
        "sent_at": "2026-01-05T09:59:00Z",
    }
    run_cli(
        "convdb", "enqueue", "message.sent", env=env, check=True, stdin=json.dumps(payload) + "\n"
    )
    run_cli("convdb", "queue-worker", "--burst", "-q", env=env, check=True)
    assert query(db_url, "SELECT status FROM conversation_messages") == [("delivered",)]
    stats = run_cli("convdb", "queue", "stats", env=env, check=True).stdout
    assert "early delivery reports (waiting for their message): 0" in stats
