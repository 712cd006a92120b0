"""The worker runs retention and the done-event purge on its schedule
(CONVDB_RETENTION_INTERVAL), in a real process."""

from __future__ import annotations

import signal
import subprocess

from convdb.testing import query, scalar

from ..privacy_support import event
from ..support import ACTUAL, BIN, REPO, STORED, fill, process_env, wait_until


def test_the_worker_applies_retention_and_purges_done_events_on_schedule(db_url):
    fill(
        db_url,
        [
            event(1, "acme", "old@example.com", "support@acme.example", "from 2025"),
            event(2, "globex", "old@example.com", "help@globex.example", "kept: no policy"),
        ],
    )
    worker = subprocess.Popen(
        [str(BIN / "convdb"), "queue-worker", "-q", "--poll-interval", "0.1"],
        cwd=REPO,
        env=process_env(db_url, {"CONVDB_RETENTION_INTERVAL": "1", "CONVDB_QUEUE_DONE_DAYS": "1"}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: scalar(db_url, "SELECT count(*) FROM messages") == 2, timeout=30)
        query(
            db_url,
            "INSERT INTO retention_policies (customer_id, days) "
            "SELECT id, 30 FROM customers WHERE key = 'acme'",
        )
        query(db_url, "UPDATE inbound_events SET processed_at = now() - interval '2 days'")
        wait_until(
            lambda: (
                scalar(db_url, "SELECT count(*) FROM messages") == 1
                and scalar(db_url, "SELECT count(*) FROM inbound_events") == 0
            ),
            timeout=30,
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    assert "maintenance failed" not in err
    assert query(db_url, "SELECT body_text FROM conversation_messages") == [("kept: no policy",)]
    assert query(db_url, STORED) == query(db_url, ACTUAL)
    assert query(db_url, "SELECT kind FROM erasures") == [("retention",)]


def test_a_redelivery_to_the_receiver_after_erasure_is_acknowledged_and_dropped(db_url):
    """Through a real `convdb serve`: the same delivery (same webhook-id) after an
    erasure is answered 2xx and brings nothing back; a new message is new data."""
    from convdb.db import open_database
    from convdb.privacy import erase_contact

    from ..serve_support import serving
    from ..support import example

    jane = example(message_id="jane-1", body="please forget me")
    jane["from"] = {"address": "jane@example.com", "name": "Jane"}
    server, sender = serving(db_url)
    burst = [str(BIN / "convdb"), "queue-worker", "--burst", "-q"]
    with server, server.client() as client:
        assert sender.post(client, jane, msg_id="msg_jane_1").status_code == 200
        subprocess.run(burst, env=process_env(db_url), cwd=REPO, check=True, timeout=120)
        assert scalar(db_url, "SELECT count(*) FROM messages") == 1
        db = open_database(db_url)
        try:
            assert erase_contact(db, "acme", "jane@example.com").counts["events"] == 1
        finally:
            db.close()
        again = sender.post(client, jane, msg_id="msg_jane_1")
        assert again.status_code == 200, again.text
        fresh = sender.post(client, dict(jane, message_id="jane-2"), msg_id="msg_jane_2")
        assert fresh.status_code == 200, fresh.text
    subprocess.run(burst, env=process_env(db_url), cwd=REPO, check=True, timeout=120)
    assert query(db_url, "SELECT provider_message_id FROM messages") == [("jane-2",)]
