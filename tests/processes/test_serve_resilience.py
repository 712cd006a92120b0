"""The receiver under signals, crashes, load and a vanishing database: no 2xx is lost."""

from __future__ import annotations

import concurrent.futures
import signal
import threading
import time

import httpx
import psycopg2
import pytest

from convdb.testing import query, scalar

from ..serve_support import ServeProcess, serving
from ..support import example, wait_until

pytestmark = pytest.mark.slow


def stored_keys(url: str) -> list[str]:
    return [r[0] for r in query(url, "SELECT idempotency_key FROM inbound_events")]


def pending_writes(server: ServeProcess) -> float:
    """The server's own count of rows waiting for their group commit (GET /metrics)."""
    with server.client() as client:
        text = client.get("/metrics").text
    values = [
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("convdb_serve_pending_writes")
    ]
    return sum(values)


def test_sigterm_answers_the_requests_in_flight_then_exits_0(db_url):
    server, sender = serving(db_url)
    blocker = psycopg2.connect(db_url)
    with server:
        with server.client() as client:  # warm: endpoints read, writer connected
            assert sender.post(client, example(message_id="warm")).status_code == 200
        # Hold the table: the next requests wait for their commit, in flight.
        with blocker.cursor() as cur:
            cur.execute("LOCK TABLE inbound_events IN EXCLUSIVE MODE")
        requests = [
            sender.request(example(message_id=f"t-{i}"), msg_id=f"msg_term_{i}") for i in range(8)
        ]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:

            def post(request):
                with server.client() as client:
                    return client.post(sender.path, content=request[0], headers=request[1])

            answers = [pool.submit(post, r) for r in requests]
            # Every request is in the server, waiting for its commit.
            wait_until(lambda: pending_writes(server) == 8, timeout=60)
            server.proc.send_signal(signal.SIGTERM)
            time.sleep(1.0)
            assert server.proc.poll() is None  # still finishing what it accepted
            blocker.rollback()  # let the commits through
            statuses = [a.result(timeout=30).status_code for a in answers]
        assert server.stop() == 0
    blocker.close()
    assert statuses == [200] * 8
    assert (
        sum(k.endswith(tuple(f"msg_term_{i}" for i in range(8))) for k in stored_keys(db_url)) == 8
    )
    assert "Application shutdown complete" in server.output


def _block_connections(admin_url: str, name: str, allow: bool) -> None:
    conn = psycopg2.connect(admin_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(allow).lower()}')
        if not allow:
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
    conn.close()


def test_database_down_gets_503_with_retry_after_then_recovers_by_itself(server, template_db):
    name = server.create(template=template_db)
    url = server.url(name)
    receiver, sender = serving(url)
    try:
        with receiver, receiver.client() as client:
            assert sender.post(client, example(message_id="up-1")).status_code == 200
            _block_connections(server.admin_url, name, allow=False)
            down = sender.post(client, example(message_id="down-1"), msg_id="msg_down")
            health = client.get("/healthz")
            assert (down.status_code, down.headers.get("retry-after")) == (503, "5")
            assert down.json()["error"] == "database_unavailable"
            assert health.status_code == 503
            _block_connections(server.admin_url, name, allow=True)
            again = wait_until(
                lambda: (
                    (
                        r := sender.post(client, example(message_id="down-1"), msg_id="msg_down")
                    ).status_code
                    == 200
                    and r
                ),
                timeout=15,
                interval=0.3,
            )
            assert again.json()["status"] == "stored"
            assert client.get("/healthz").status_code == 200
            metrics = client.get("/metrics").text
            assert 'reason="database_unavailable"' in metrics
            assert receiver.stop() == 0
        assert "database unavailable" in receiver.output
        keys = stored_keys(url)
        assert sum(k.endswith("msg_down") for k in keys) == 1 and len(keys) == 2
    finally:
        _block_connections(server.admin_url, name, allow=True)
        server.drop(name)


def test_two_workers_share_metrics_and_stop_cleanly(db_url):
    server, sender = serving(db_url, "--workers", "2")
    with server:
        wait_until(server.healthy, timeout=30)
        with concurrent.futures.ThreadPoolExecutor(8) as pool:

            def post(i):
                with server.client() as client:
                    return sender.post(client, example(message_id=f"w-{i}")).status_code

            statuses = list(pool.map(post, range(40)))
        assert statuses == [200] * 40
        pids = {line.split()[2] for line in server.lines if "convdb.serve.access" in line}
        text = httpx.get(server.base_url + "/metrics").text
        accepted = [
            line
            for line in text.splitlines()
            if line.startswith('convdb_webhooks_total{endpoint="acme/inhouse",outcome="accepted"')
        ]
        assert accepted and float(accepted[0].split()[-1]) == 40.0, accepted
        assert server.stop() == 0
    assert len(pids) == 2, "both worker processes answered requests"
    assert scalar(db_url, "SELECT count(*) FROM inbound_events") == 40


def test_kill_9_under_load_loses_no_acknowledged_webhook(db_url):
    """Every delivery answered 2xx before ``kill -9`` is in inbound_events exactly once."""
    server, sender = serving(db_url)
    acked: set[str] = set()
    sent: dict[str, tuple[bytes, dict]] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def load(worker: int) -> None:
        with httpx.Client(base_url=server.base_url, timeout=10) as client:
            for i in range(100_000):
                if stop.is_set():
                    return
                msg_id = f"msg_crash_{worker}_{i}"
                request = sender.request(example(message_id=f"c-{worker}-{i}"), msg_id=msg_id)
                with lock:
                    sent[msg_id] = request
                try:
                    answer = client.post(sender.path, content=request[0], headers=request[1])
                except httpx.HTTPError:
                    return  # the server is gone
                if answer.status_code == 200:
                    with lock:
                        acked.add(msg_id)

    with server:
        threads = [threading.Thread(target=load, args=(w,)) for w in range(16)]
        for thread in threads:
            thread.start()
        wait_until(lambda: len(acked) >= 1500, timeout=90)
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(10)
        stop.set()
        for thread in threads:
            thread.join(15)
    keys = [k.rsplit(":", 1)[1] for k in stored_keys(db_url)]
    assert len(keys) == len(set(keys))
    missing = acked - set(keys)
    print(
        f"\ncrash under load: {len(sent)} sent, {len(acked)} acknowledged with 2xx, "
        f"{len(keys)} stored at the kill, {len(acked & set(keys))} of the acknowledged found, "
        f"{len(missing)} missing"
    )
    assert not missing
    # The sender retries everything after the restart: each delivery is stored exactly once.
    restarted = ServeProcess(db_url, env={"CONVDB_TEST_SECRET": sender.secret})
    with restarted, restarted.client() as client:
        retried = [
            client.post(sender.path, content=b, headers=h).status_code for b, h in sent.values()
        ]
        assert restarted.stop() == 0
    assert set(retried) == {200}
    final = [k.rsplit(":", 1)[1] for k in stored_keys(db_url)]
    assert sorted(final) == sorted(sent)
    print(f"after the restart and the retries: {len(final)} stored for {len(sent)} sent")
