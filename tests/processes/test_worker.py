"""The worker: real `convdb queue-worker` processes and signals, and in-process dispatch."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from convdb import db as convdb_db
from convdb.exceptions import TransientError
from convdb.queue import enqueue
from convdb.queue.worker import WorkerConfig, run
from convdb.testing import query, scalar

from ..support import ACTUAL as COUNTERS_ACTUAL
from ..support import STORED as COUNTERS_STORED
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


def test_two_burst_workers_process_every_event_exactly_once(db_url):
    fill(db_url, sms_events(2000))
    workers = [start_worker(db_url, "--burst", "-q", "--batch-size", "50") for _ in range(2)]
    for worker in workers:
        _, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, err
    assert status_counts(db_url) == {"done": 2000}
    assert query(db_url, "SELECT DISTINCT attempts FROM inbound_events") == [(1,)]
    assert messages_by_provider_id(db_url) == (2000, 2000)
    assert query(db_url, COUNTERS_STORED) == query(db_url, COUNTERS_ACTUAL)
    by_worker = query(db_url, "SELECT locked_by, count(*) FROM inbound_events GROUP BY 1")
    assert len(by_worker) == 2, by_worker  # both processes took part


def test_sigkill_mid_run_then_restart_loses_and_duplicates_nothing(db_url):
    fill(db_url, sms_events(2000))
    worker = start_worker(db_url, "-q", "--lease", "2", "--batch-size", "50")
    wait_until(lambda: status_counts(db_url).get("done", 0) >= 300)
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)
    assert status_counts(db_url).get("done", 0) < 2000  # killed in the middle
    # The dead worker's leases expire within --lease; then a new worker takes over.
    wait_until(
        lambda: scalar(
            db_url,
            "SELECT count(*) = 0 FROM inbound_events "
            "WHERE status = 'processing' AND locked_until > now()",
        ),
        timeout=10,
    )
    restarted = start_worker(db_url, "--burst", "-q")
    _, err = restarted.communicate(timeout=60)
    assert restarted.returncode == 0, err
    assert status_counts(db_url) == {"done": 2000}
    assert messages_by_provider_id(db_url) == (2000, 2000)
    assert query(db_url, COUNTERS_STORED) == query(db_url, COUNTERS_ACTUAL)


def test_sigterm_finishes_the_batch_in_hand_and_exits_0(db_url):
    fill(db_url, sms_events(2000))
    worker = start_worker(db_url, "--batch-size", "200")
    wait_until(lambda: status_counts(db_url).get("done", 0) >= 200)
    worker.send_signal(signal.SIGTERM)
    _, err = worker.communicate(timeout=20)
    assert worker.returncode == 0, err
    assert "SIGTERM received" in err
    counts = status_counts(db_url)
    assert "processing" not in counts
    assert counts.get("pending", 0) > 0  # it stopped claiming
    # Released events gave their attempt back: draining now tries each exactly once.
    finisher = start_worker(db_url, "--burst", "-q")
    assert finisher.wait(timeout=60) == 0
    assert status_counts(db_url) == {"done": 2000}
    assert query(db_url, "SELECT DISTINCT attempts FROM inbound_events") == [(1,)]


def test_idle_worker_picks_up_a_new_event_quickly(db_url):
    worker = start_worker(db_url, "-q", "--poll-interval", "30")  # only NOTIFY can wake it
    try:
        fill(db_url, [example(message_id="warm-up")])
        wait_until(lambda: status_counts(db_url) == {"done": 1})
        time.sleep(0.5)  # idle, waiting on LISTEN
        started = time.monotonic()
        fill(db_url, [example(message_id="new")])
        wait_until(lambda: status_counts(db_url) == {"done": 2}, interval=0.005)
        assert time.monotonic() - started < 2.0
    finally:
        worker.send_signal(signal.SIGINT)
        worker.wait(timeout=10)
    assert worker.returncode == 0


def test_bad_payloads_go_dead_with_readable_errors_good_ones_are_ingested(db_url):
    good = sms_events(20)
    bad = [
        example(sent_at="2025-11-05 10:00:00", message_id="naive"),
        example(to=None, message_id="no-to"),
        example(provider={"kind": "fax", "name": "x"}),
    ]
    fill(db_url, good[:10] + bad + good[10:])
    fill(db_url, [{"whatever": 1}], event_type="no.such.type")
    worker = start_worker(db_url, "--burst")
    _, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err
    # Without -q, a burst run ends with its progress line.
    assert "events/s, done 20, retried 0, dead 4, queue depth 0" in err
    assert status_counts(db_url) == {"done": 20, "dead": 4}
    errors = [
        r[0]
        for r in query(
            db_url, "SELECT last_error FROM inbound_events WHERE status = 'dead' ORDER BY id"
        )
    ]
    assert errors == [
        "sent_at: no time zone in '2025-11-05 10:00:00'; give an offset such as Z or +02:00",
        "to: missing (required)",
        "provider.kind: 'fax' is not one of email, sms, mms",
        "unknown event type 'no.such.type': no handler "
        "(known: message.received, message.sent, message.status)",
    ]
    assert query(db_url, "SELECT DISTINCT attempts FROM inbound_events") == [(1,)]
    assert messages_by_provider_id(db_url) == (20, 20)


def test_redelivered_events_create_no_second_message(db_url):
    fill(db_url, [example()], keys=["sendgrid:provider-msg-0001"])
    fill(db_url, [example()], keys=["sendgrid:provider-msg-0001"])  # same key: not stored
    fill(db_url, [example(received_at="2025-11-05T08:09:00Z")])  # same provider message id
    assert scalar(db_url, "SELECT count(*) FROM inbound_events") == 2
    worker = start_worker(db_url, "--burst", "-q")
    assert worker.wait(timeout=30) == 0
    assert status_counts(db_url) == {"done": 2}
    assert messages_by_provider_id(db_url) == (1, 1)


# --- in-process: dispatch, retries, transient errors --------------------------------------


def quiet(**overrides) -> WorkerConfig:
    return WorkerConfig(burst=True, progress_interval=0, **overrides)


def test_explicit_handlers_are_dispatched_in_the_events_transaction(db_url):
    seen = []

    def record(event):
        seen.append((event.id, event.event_type, event.payload, event.attempts))
        convdb_db.database.execute_sql(
            "INSERT INTO customers (name) VALUES (%s)", (event.payload["name"],)
        )
        if event.payload["name"] == "fails":
            raise PermissionError("handler refused it")

    fill(db_url, [{"name": "a"}, {"name": "fails"}, {"name": "b"}], event_type="tag.added")
    counters = run(db_url, handlers={"tag.added": record}, config=quiet(), echo=lambda _: None)
    assert (counters.done, counters.dead) == (2, 1)
    # The optimistic pass over the whole batch stopped at the failure and was rolled
    # back; the batch was then split around it: the events before it as a batch,
    # the failing one alone, the events after it.
    assert [s[1:] for s in seen] == [
        ("tag.added", {"name": "a"}, 1),
        ("tag.added", {"name": "fails"}, 1),
        ("tag.added", {"name": "a"}, 1),
        ("tag.added", {"name": "fails"}, 1),
        ("tag.added", {"name": "b"}, 1),
    ]
    # The failing handler's write was rolled back with its savepoint; its neighbours
    # stayed, once each (the optimistic pass left nothing behind).
    assert query(db_url, "SELECT name FROM customers ORDER BY id") == [("a",), ("b",)]
    # Not a transient failure: dead at once, on its first attempt.
    dead = "SELECT last_error, attempts FROM inbound_events WHERE status = 'dead'"
    assert query(db_url, dead) == [("PermissionError: handler refused it", 1)]


def test_transient_failure_goes_back_to_pending_with_backoff(db_url):
    def flaky(event):
        raise TransientError("provider API unavailable")

    fill(db_url, [{"n": 1}], event_type="flaky")
    run(db_url, handlers={"flaky": flaky}, config=quiet(backoff_base=100), echo=lambda _: None)
    (row,) = query(
        db_url,
        "SELECT status, attempts, last_error, locked_until, "
        "extract(epoch FROM available_at - now()) FROM inbound_events",
    )
    assert row[:4] == ("pending", 1, "provider API unavailable", None)
    assert 45 < row[4] <= 100  # equal jitter: between half and all of the first step
    # Due again (as if the backoff passed): the last allowed attempt sends it to dead.
    query(db_url, "UPDATE inbound_events SET available_at = now(), attempts = 4")
    run(db_url, handlers={"flaky": flaky}, config=quiet(), echo=lambda _: None)
    assert query(db_url, "SELECT status, attempts FROM inbound_events") == [("dead", 5)]


def test_serialization_failure_is_retried_at_once_without_a_new_attempt(db_url):
    calls = []

    def conflicted(event):
        calls.append(event.id)
        if len(calls) == 1:
            convdb_db.database.execute_sql(
                "DO $$ BEGIN RAISE EXCEPTION 'simulated conflict' USING ERRCODE = '40001'; END $$"
            )
        convdb_db.database.execute_sql("INSERT INTO customers (name) VALUES ('ok')")

    fill(db_url, [{"n": 1}, {"n": 2}], event_type="c")
    counters = run(db_url, handlers={"c": conflicted}, config=quiet(), echo=lambda _: None)
    assert counters.done == 2 and counters.retried == 0
    assert query(db_url, "SELECT status, attempts FROM inbound_events ORDER BY id") == [
        ("done", 1),
        ("done", 1),
    ]
    assert scalar(db_url, "SELECT count(*) FROM customers") == 2


def test_lost_connection_mid_batch_reconnects_and_redoes_the_batch(db_url):
    calls = []

    def killer(event):
        calls.append(event.payload["n"])
        convdb_db.database.execute_sql("INSERT INTO customers (name) VALUES (%s)", (str(calls),))
        if event.payload["n"] == 2 and calls.count(2) == 1:
            convdb_db.database.execute_sql("SELECT pg_terminate_backend(pg_backend_pid())")

    fill(db_url, [{"n": n} for n in range(1, 5)], event_type="k")
    lines = []
    counters = run(
        db_url, handlers={"k": killer}, config=quiet(backoff_base=0.01), echo=lines.append
    )
    while status_counts(db_url) != {"done": 4}:  # the culprit waits out its backoff
        counters = run(db_url, handlers={"k": killer}, config=quiet(), echo=lines.append)
    assert any("reconnecting" in line for line in lines)
    attempts = query(db_url, "SELECT attempts FROM inbound_events ORDER BY id")
    assert attempts == [(1,), (2,), (1,), (1,)]
    # The first try of the batch was rolled back: one committed write per event.
    assert scalar(db_url, "SELECT count(*) FROM customers") == 4
    assert counters.dead == 0


def test_a_write_refused_as_on_a_standby_discards_the_connection_never_dead(db_url):
    """SQLSTATE 25006 (read-only transaction: the connection is on a standby) is no event's
    fault: the connection is dropped, the batch given back with its attempts, nothing dead."""
    calls = []

    def demoted(event):
        calls.append(event.payload["n"])
        if event.payload["n"] == 2 and calls.count(2) == 1:
            convdb_db.database.execute_sql("SET TRANSACTION READ ONLY")  # as on a standby
        convdb_db.database.execute_sql("INSERT INTO customers (name) VALUES (%s)", (str(calls),))

    fill(db_url, [{"n": n} for n in range(1, 5)], event_type="k")
    lines = []
    counters = run(db_url, handlers={"k": demoted}, config=quiet(), echo=lines.append)
    assert any("read-only transaction" in line and "reconnecting" in line for line in lines)
    assert status_counts(db_url) == {"done": 4}
    assert query(db_url, "SELECT attempts FROM inbound_events ORDER BY id") == [(1,)] * 4
    assert scalar(db_url, "SELECT count(*) FROM customers") == 4
    assert counters.dead == 0 and counters.released == 4


def test_enqueue_in_process_then_burst_on_the_canonical_handlers(db_url):
    database = convdb_db.open_database(db_url)
    convdb_db.init(database)
    enqueue("message.received", example())
    database.close()
    counters = run(db_url, config=quiet(), echo=lambda _: None)
    assert counters.done == 1
    assert messages_by_provider_id(db_url) == (1, 1)


SLOW_WORKER = """
import sys, time
from convdb.queue.worker import WorkerConfig, run

def slow(event):
    print("handling", file=sys.stderr, flush=True)
    time.sleep(30)

run(sys.argv[1], handlers={"slow": slow}, config=WorkerConfig(lease_seconds=1, progress_interval=0))
"""


def test_second_signal_exits_at_once_and_the_lease_covers_the_rest(db_url):
    fill(db_url, [{"n": 1}], event_type="slow")
    worker = subprocess.Popen(
        [sys.executable, "-c", SLOW_WORKER, db_url], stderr=subprocess.PIPE, text=True
    )
    assert worker.stderr.readline() == "handling\n"  # the handler is running
    worker.send_signal(signal.SIGTERM)
    # The worker says it got the first signal; the handler still sleeps, so it cannot finish.
    line = worker.stderr.readline()
    while line and "SIGTERM received, finishing the events in hand" not in line:
        line = worker.stderr.readline()
    assert "SIGTERM received, finishing the events in hand" in line
    assert worker.poll() is None
    started = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=10) == 128 + signal.SIGTERM
    assert time.monotonic() - started < 2
    # What it held is taken over once the lease (1 s) runs out.
    expired = "SELECT count(*) FROM inbound_events WHERE locked_until < now()"
    wait_until(lambda: scalar(db_url, expired) == 1, timeout=10)


def test_concurrency_threads_share_the_queue_without_overlap(db_url):
    fill(db_url, sms_events(300, customers=3, contacts=30))
    counters = run(db_url, config=quiet(concurrency=3, batch_size=10), echo=lambda _: None)
    assert counters.done == 300
    assert query(db_url, "SELECT DISTINCT attempts FROM inbound_events") == [(1,)]
    assert messages_by_provider_id(db_url) == (300, 300)
    threads = scalar(db_url, "SELECT count(DISTINCT locked_by) FROM inbound_events")
    assert threads == 3
