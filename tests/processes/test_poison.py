"""One event can only ever hurt itself: poison payloads and events that kill their worker."""

from __future__ import annotations

import random
import signal
import subprocess
import sys

import pytest

from convdb.testing import query, scalar

from ..support import (
    example,
    fill,
    messages_by_provider_id,
    sms_events,
    start_worker,
    status_counts,
    wait_until,
)

pytestmark = pytest.mark.slow

DEEP = "('{\"a\":' || repeat('[', 5000) || repeat(']', 5000) || '}')::jsonb"


def test_deep_payload_fails_alone_and_the_worker_exits_0(db_url):
    fill(db_url, sms_events(25))
    insert = "INSERT INTO inbound_events (event_type, payload) VALUES ('message.received', {})"
    query(db_url, insert.format(DEEP))
    fill(db_url, sms_events(25, prefix="n"))
    worker = start_worker(db_url, "--burst")
    _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    assert "Traceback" not in err and "RecursionError" not in err
    assert status_counts(db_url) == {"done": 50, "dead": 1}
    dead = "SELECT last_error, attempts FROM inbound_events WHERE status = 'dead'"
    assert query(db_url, dead) == [
        ("payload: nested deeper than 64 levels (CONVDB_MAX_PAYLOAD_DEPTH)", 1)
    ]
    assert query(db_url, "SELECT DISTINCT attempts FROM inbound_events") == [(1,)]
    assert messages_by_provider_id(db_url) == (50, 50)


def test_python_errors_from_one_handler_fail_that_event_alone(db_url):
    fill(db_url, [{"n": n} for n in range(6)], event_type="fragile")
    worker = subprocess.run(
        [sys.executable, "-c", FRAGILE_WORKER, db_url], capture_output=True, text=True, timeout=60
    )
    assert worker.returncode == 0, worker.stderr
    rows = query(
        db_url,
        "SELECT payload->>'n', status, attempts, last_error FROM inbound_events ORDER BY id",
    )
    assert rows == [
        ("0", "done", 1, None),
        ("1", "dead", 1, "RecursionError: maximum recursion depth exceeded"),
        ("2", "done", 1, None),
        ("3", "dead", 1, "MemoryError"),
        ("4", "dead", 1, "SystemExit: 3"),
        ("5", "done", 1, None),
    ]
    assert scalar(db_url, "SELECT string_agg(name, ',' ORDER BY id) FROM customers") == "0,2,5"


FRAGILE_WORKER = """
import sys
from convdb import db
from convdb.queue.worker import WorkerConfig, run

def recurse(n):
    return recurse(n + 1)

def handle(event):
    n = event.payload["n"]
    db.database.execute_sql("INSERT INTO customers (name) VALUES (%s)", (str(n),))
    if n == 1:
        recurse(0)
    if n == 3:
        raise MemoryError()
    if n == 4:
        sys.exit(3)

run(sys.argv[1], handlers={"fragile": handle},
    config=WorkerConfig(burst=True, progress_interval=0), echo=lambda _: None)
"""

# A handler that kills its own process (as an out-of-memory kill or a crash in
# a C extension would) on the poisoned event, and writes a row for the others.
KILLER_WORKER = """
import os, signal, sys
from convdb import db
from convdb.queue.worker import WorkerConfig, run

def handle(event):
    if event.payload.get("poison"):
        os.kill(os.getpid(), signal.SIGKILL)
    db.database.execute_sql("INSERT INTO customers (name) VALUES (%s)", (event.payload["name"],))

run(sys.argv[1], handlers={"work": handle}, echo=lambda _: None,
    config=WorkerConfig(burst=True, batch_size=20, lease_seconds=0.5, max_attempts=2,
                        progress_interval=0))
"""


def test_an_event_that_keeps_killing_its_worker_goes_dead_alone(db_url):
    payloads = [{"name": f"e{i}"} for i in range(20)]
    payloads[12] = {"name": "poison", "poison": True}
    fill(db_url, payloads, event_type="work")
    exits = []
    for _ in range(20):
        counts = status_counts(db_url)
        if not counts.keys() & {"pending", "processing"}:
            break
        # Wait for the dead worker's lease to run out, as a restarted one would.
        wait_until(
            lambda: scalar(
                db_url,
                "SELECT count(*) = 0 FROM inbound_events "
                "WHERE status = 'processing' AND locked_until > now()",
            ),
            timeout=10,
        )
        worker = subprocess.run(
            [sys.executable, "-c", KILLER_WORKER, db_url], capture_output=True, timeout=60
        )
        exits.append(worker.returncode)
    # Killed with a group of 20, then 10, 5 and 2 around the culprit, then
    # twice with it alone (its two attempts); every other run exited 0.
    assert exits.count(-signal.SIGKILL) == 6, exits
    assert exits[-1] == 0, exits
    rows = query(
        db_url,
        "SELECT payload->>'name', status, attempts, last_error FROM inbound_events ORDER BY id",
    )
    innocent = [r for r in rows if r[0] != "poison"]
    assert {(status, attempts, error) for _, status, attempts, error in innocent} == {
        ("done", 1, None)
    }
    ((_, status, attempts, error),) = [r for r in rows if r[0] == "poison"]
    assert (status, attempts) == ("dead", 2)
    assert error.startswith("abandoned: its worker (")
    assert "stopped while processing this event alone (lease expired) on attempt 2 of 2" in error
    assert error.endswith("the event kills or stalls its worker")
    # Each innocent event's write committed exactly once.
    names = [r[0] for r in query(db_url, "SELECT name FROM customers ORDER BY name")]
    assert names == sorted(p["name"] for p in payloads if "poison" not in p)


def test_sigkill_while_holding_a_batch_charges_no_innocent_event(db_url):
    fill(db_url, sms_events(400))
    worker = start_worker(db_url, "-q", "--lease", "1", "--batch-size", "100")
    wait_until(
        lambda: (c := status_counts(db_url)).get("done", 0) >= 100 and c.get("processing"),
        interval=0.005,
    )
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)
    assert status_counts(db_url).get("processing", 0) > 0  # it died holding a batch
    held = (
        "SELECT count(*) FROM inbound_events WHERE status = 'processing' AND locked_until >= now()"
    )
    wait_until(lambda: scalar(db_url, held) == 0, timeout=10)  # its leases ran out
    restarted = start_worker(db_url, "--burst", "-q", "--max-attempts", "1")
    _, err = restarted.communicate(timeout=60)
    assert restarted.returncode == 0, err
    # With one attempt allowed, an event charged for the crash would be dead now.
    assert status_counts(db_url) == {"done": 400}
    assert messages_by_provider_id(db_url) == (400, 400)


def long_address(seed: int, domain: str) -> str:
    """An address whose thread key overflows its unique index (SQLSTATE 54000):
    characters that escape long in JSON and compress too little to be shrunk."""
    rng = random.Random(seed)
    chars = [chr(rng.randint(0x20000, 0x3FFFF)) for _ in range(200)]
    chars += [chr(rng.randint(1, 31)) for _ in range(105)]
    rng.shuffle(chars)
    return "x" + "".join(chars) + "@" + domain


def test_data_errors_go_dead_at_once_and_their_neighbours_are_done(db_url):
    bad = [
        example(message_id="overflow", sent_at="0001-01-01T00:00:00+02:00"),
        example(
            message_id="long",
            conversation_key=None,
            sender={"address": long_address(1, "contact.example")},
            to=[{"address": long_address(2, "customer.example")}],
        ),
    ]
    good = sms_events(100)
    fill(db_url, good[:30] + bad[:1] + good[30:70] + bad[1:] + good[70:])
    worker = start_worker(db_url, "--burst", "-q")
    _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    assert status_counts(db_url) == {"done": 100, "dead": 2}
    rows = query(
        db_url,
        "SELECT payload->>'message_id', attempts, last_error FROM inbound_events "
        "WHERE status = 'dead' ORDER BY id",
    )
    # Permanent: dead on the first attempt, never retried. (Validation may name
    # the field first; the database's own refusal is permanent too.)
    assert [r[:2] for r in rows] == [("overflow", 1), ("long", 1)]
    assert "sent_at" in rows[0][2] or rows[0][2] == "OverflowError: date value out of range"
    assert "address" in rows[1][2] or (
        "index row size" in rows[1][2] and "conversations_customer_thread_key_key" in rows[1][2]
    )
    assert query(db_url, "SELECT DISTINCT attempts FROM inbound_events") == [(1,)]
    assert messages_by_provider_id(db_url) == (100, 100)
