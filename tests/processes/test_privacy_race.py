"""Erasure racing ingestion of the same address, with real processes: a queue worker
ingests messages from the person (same address, same body, same attachment URL) in
a loop while another process erases them again and again. No event goes dead (no
foreign key failure), no reference dangles, the counters stay exact, and once the
ingestion stops a last erasure leaves only what another customer uses."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

from convdb.db import open_database
from convdb.queue.manager import QueueManager
from convdb.testing import query, scalar

from ..privacy_support import event
from ..support import (
    ACTUAL,
    REPO,
    STORED,
    fill,
    process_env,
    start_worker,
    status_counts,
    wait_until,
)

JANE = "jane@example.com"
URL = "https://files.example/same.png"

ERASER = """
import json, sys, time
from convdb.db import open_database
from convdb.exceptions import ConvdbError
from convdb.privacy import erase_contact
db = open_database(sys.argv[1])
done, nothing, deadline = 0, 0, time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline:
    try:
        result = erase_contact(db, "acme", "jane@example.com")
        done += result.counts["messages"] > 0
    except ConvdbError:  # nobody to erase (yet, or again)
        nothing += 1
print(json.dumps({"erasures": done, "nothing": nothing}))
"""


# Ingestion through the library in a process of its own, each batch its own
# transaction: what the worker retries (a TransientError, a deadlock: the
# worker's own classification, convdb.pgerrors.is_transient) is retried; any
# other error (a foreign key failure) is the bug this test looks for.
INGESTER = """
import json, sys, time
from convdb.db import open_database
from convdb.exceptions import TransientError
from convdb.ingest import ingest_messages, parse_message
from convdb.pgerrors import is_transient
sys.path.insert(0, sys.argv[3])
from tests.processes.test_privacy_race import _jane
db = open_database(sys.argv[1])
n, stored, transient, errors = 100000, 0, 0, []
deadline = time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline:
    batch = [parse_message(_jane(n + i), "message.received") for i in range(5)]
    try:
        with db.atomic():
            stored += sum(1 for i in ingest_messages(db, batch) if i)
        n += 5
    except TransientError:
        transient += 1
    except Exception as exc:
        if is_transient(exc):
            transient += 1
            continue
        errors.append(f"{type(exc).__name__}: {exc}"[:300])
        db.close()
print(json.dumps({"stored": stored, "transient": transient, "errors": errors[:5]}))
"""


def _jane(n: int) -> dict:
    payload = event(n, "acme", JANE, "support@acme.example", "the same body", name="Jane")
    payload["attachments"] = [{"url": URL, "content_type": "image/png"}]
    if n % 3 == 0:
        payload["conversation_key"] = "shared-thread"
    return payload


def test_erasure_racing_ingestion_of_the_same_address(db_url):
    # globex shares the address, the body and the URL: they must survive everything
    fill(db_url, [dict(_jane(0), customer={"key": "globex", "name": "Globex"})])
    worker = start_worker(
        db_url,
        "--backoff",
        "0.05",
        "--poll-interval",
        "0.1",
        "-q",
        "--batch-size",
        "5",
        "--concurrency",
        "2",
    )
    ingester = subprocess.Popen(
        [sys.executable, "-c", INGESTER, db_url, "8", str(REPO)],
        cwd=REPO,
        env=process_env(db_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    eraser = subprocess.Popen(
        [sys.executable, "-c", ERASER, db_url, "8"],
        cwd=REPO,
        env=process_env(db_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    db = open_database(db_url)
    try:
        manager = QueueManager(db)
        n = 1
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            batch = [_jane(n + i) for i in range(5)]
            manager.insert([("message.received", json.dumps(p), None, 0) for p in batch])
            n += 5
            time.sleep(0.02)
        out, err = eraser.communicate(timeout=120)
        assert eraser.returncode == 0, err
        report = json.loads(out)
        assert report["erasures"] >= 5, report  # the race really happened, many times
        out, err = ingester.communicate(timeout=120)
        assert ingester.returncode == 0, err
        ingested = json.loads(out)
        assert ingested["errors"] == [], ingested
        assert ingested["stored"] > 100, ingested
        wait_until(
            lambda: (
                status_counts(db_url).get("pending", 0) == 0
                and status_counts(db_url).get("processing", 0) == 0
            ),
            timeout=60,
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        _, worker_err = worker.communicate(timeout=60)
        db.close()
    assert worker.returncode == 0, worker_err
    counts = status_counts(db_url)
    assert counts.get("dead", 0) == 0, query(
        db_url, "SELECT last_error FROM inbound_events WHERE status = 'dead' LIMIT 3"
    )
    assert "foreign key" not in worker_err
    # every counter a recount; every sender a contact of the message's customer
    assert query(db_url, STORED) == query(db_url, ACTUAL)
    assert (
        scalar(
            db_url,
            "SELECT count(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id "
            "LEFT JOIN contacts ct ON ct.id = m.sender_id "
            "WHERE ct.id IS NULL OR ct.customer_id <> c.customer_id",
        )
        == 0
    )
    # once ingestion has stopped, one more erasure leaves only globex's rows
    final = subprocess.run(
        [str(REPO / ".venv" / "bin" / "convdb"), "erase", "contact", "acme", JANE],
        cwd=REPO,
        env=process_env(db_url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert final.returncode == 0, final.stderr
    assert (
        scalar(
            db_url,
            "SELECT count(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id "
            "JOIN customers cu ON cu.id = c.customer_id "
            "WHERE cu.key = 'acme' AND m.direction = 'inbound'",
        )
        == 0
    )
    assert query(db_url, "SELECT count(*) FROM email_addresses WHERE lowered = %s", (JANE,)) == [
        (1,)
    ]
    assert query(db_url, "SELECT count(*) FROM email_bodies WHERE raw = 'the same body'") == [(1,)]
    assert query(db_url, "SELECT count(*) FROM attachment_urls WHERE raw = %s", (URL,)) == [(1,)]
    assert query(db_url, "SELECT count(*) FROM attachments") == [(1,)]  # globex's
