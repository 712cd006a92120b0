"""A database connection that stops answering (issue 16, item 4): real `convdb serve` and
`convdb queue-worker` processes behind a proxy that black-holes their connections.

The proxy (:mod:`tests.blackhole`) keeps both sides of each connection open and
acknowledged while it drops what they send: keepalives cannot see it, only
convdb's own deadlines can. New connections still go through.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from urllib.parse import urlsplit

import pytest

from convdb.testing import query

from ..blackhole import BlackHoleProxy
from ..serve_support import ServeProcess, add_endpoint
from ..support import WorkerProcess, example, fill, status_counts, wait_until

pytestmark = pytest.mark.slow

COMMIT_TIMEOUT = 3  # CONVDB_SERVE_COMMIT_TIMEOUT for these tests: the watchdog fires at 3 + 2 s


def _proxy_for(url: str) -> BlackHoleProxy:
    parts = urlsplit(url)
    if not parts.hostname:
        pytest.skip("the test server is reached over a socket: the proxy needs TCP")
    return BlackHoleProxy(parts.hostname, parts.port or 5432)


@pytest.fixture
def receiver(db_url):
    """``convdb serve`` on ``db_url`` through a black-hole proxy; (server, sender, proxy)."""
    from convdb.serve.standard import generate_secret

    from ..serve_support import Sender

    secret = generate_secret()
    path = add_endpoint(db_url)
    with _proxy_for(db_url) as proxy:
        env = {
            "CONVDB_TEST_SECRET": secret,
            "CONVDB_SERVE_COMMIT_TIMEOUT": str(COMMIT_TIMEOUT),
        }
        server = ServeProcess(proxy.url(db_url), env=env)
        with server:
            yield server, Sender(path, secret), proxy


def test_receiver_stores_again_within_30_s_of_a_black_hole(receiver, db_url):
    server, sender, proxy = receiver
    with server.client() as client:
        assert sender.post(client, example(message_id="before")).status_code == 200
        assert client.get("/healthz").status_code == 200
        assert proxy.black_hole() >= 2  # the writer's and the reader's connections
        fault = time.monotonic()
        answers = []
        while time.monotonic() - fault < 40:
            sent = time.monotonic()
            answer = sender.post(client, example(message_id=f"during-{len(answers)}"))
            answers.append((answer.status_code, time.monotonic() - sent))
            if answer.status_code == 200:
                break
        recovered = time.monotonic() - fault
        health = [client.get("/healthz").status_code for _ in range(2)]
        assert server.stop() == 0
    print(f"\nblack hole: first 2xx {recovered:.1f} s after the fault, answers {answers}")
    assert answers[-1][0] == 200 and recovered < 30
    assert health == [200, 200]  # the reader's stuck call was aborted and retried in time
    assert {status for status, _ in answers} <= {200, 503}  # never a 500
    assert max(seconds for _, seconds in answers) < COMMIT_TIMEOUT + 3  # never a hang
    assert "cancelling it and dropping the connection" in server.output
    stored = [k for (k,) in query(db_url, "SELECT idempotency_key FROM inbound_events")]
    assert len(stored) == len(set(stored))


def test_sigterm_exits_in_time_while_the_database_does_not_answer(receiver):
    server, sender, proxy = receiver
    with server.client() as client:
        assert sender.post(client, example(message_id="before")).status_code == 200
    proxy.black_hole()
    in_flight = []

    def post():
        with server.client() as client:
            in_flight.append(sender.post(client, example(message_id="stuck")).status_code)

    thread = threading.Thread(target=post)
    thread.start()
    time.sleep(0.5)  # the request waits for a commit that will never be answered
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(30) == 0
    took = time.monotonic() - started
    thread.join(10)
    print(f"\nSIGTERM with a silent database: exited 0 after {took:.1f} s")
    # Documented: at most 30 s; here the request's own timeout, then the writer's abort.
    assert took < COMMIT_TIMEOUT + 15
    assert in_flight == [503]
    assert "shutting down; waiting up to" in server.output  # says why it is slow


def test_worker_drains_again_after_a_black_hole_and_sigterm_exits_in_time(db_url):
    with _proxy_for(db_url) as proxy:
        # --lease 4: a call the database does not answer is aborted after 8 s.
        worker = WorkerProcess(proxy.url(db_url), "-q", "--lease", "4", "--poll-interval", "0.5")
        try:
            fill(db_url, [example(message_id="first")])
            wait_until(lambda: status_counts(db_url) == {"done": 1}, timeout=30)
            proxy.black_hole()
            fault = time.monotonic()
            fill(db_url, [example(message_id=f"after-{i}") for i in range(20)])
            wait_until(lambda: status_counts(db_url) == {"done": 21}, timeout=40, interval=0.2)
            recovered = time.monotonic() - fault
            assert "cancelling it and dropping the connection" in worker.output

            proxy.black_hole()
            time.sleep(1.5)  # its next poll is sent into the hole
            started = time.monotonic()
            worker.proc.send_signal(signal.SIGTERM)
            assert worker.proc.wait(40) == 0
            took = time.monotonic() - started
        finally:
            worker.kill()
    print(f"\nworker: drained again {recovered:.1f} s after the fault; SIGTERM took {took:.1f} s")
    assert took < 25  # shutdown_grace (20 s) at most, here the call's own deadline
    rows = query(db_url, "SELECT count(*), count(DISTINCT provider_message_id) FROM messages")
    assert rows == [(21, 21)]


@pytest.mark.parametrize("where", ["convdb", "serve"])
def test_every_connection_has_keepalives_and_a_user_timeout(db_url, where, monkeypatch):
    import socket

    monkeypatch.setenv("CONVDB_DB_KEEPALIVES_IDLE", "17")
    monkeypatch.setenv("CONVDB_DB_TCP_USER_TIMEOUT", "12.5")
    if not urlsplit(db_url).hostname:
        pytest.skip("the test server is reached over a socket: no TCP options")
    if where == "convdb":
        from convdb.db import open_database

        db = open_database(db_url)
        conn = db.connection()
    else:
        from convdb.serve.pg import open_connection

        conn = open_connection(db_url, name="test", statement_timeout=1)
    try:
        sock = socket.socket(fileno=os.dup(conn.fileno()))
        try:
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 17
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 10
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 12500
        finally:
            sock.close()
        assert conn.info.dsn_parameters["target_session_attrs"] == "read-write"
    finally:
        conn.close()


def test_a_parameter_in_the_url_wins(db_url):
    import socket

    from convdb.db import open_database

    if not urlsplit(db_url).hostname:
        pytest.skip("the test server is reached over a socket: no TCP options")
    db = open_database(db_url + "?keepalives_idle=77&target_session_attrs=any")
    try:
        sock = socket.socket(fileno=os.dup(db.connection().fileno()))
        try:
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 77
        finally:
            sock.close()
        assert db.connection().info.dsn_parameters["target_session_attrs"] == "any"
    finally:
        db.close()


def test_the_read_url_prefers_a_standby_and_reads_in_read_only_sessions(db_url, monkeypatch):
    from convdb.db import closing, connect_read, open_database, resolve_read_url

    read_url = db_url + ("&" if "?" in db_url else "?") + "application_name=reads"
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("CONVDB_READ_URL", read_url)
    notes = []
    for db in (open_database(resolve_read_url()), connect_read(note=notes.append)):
        with closing(db):
            params = db.connection().info.dsn_parameters
            assert params["target_session_attrs"] == "prefer-standby"
            assert db.execute_sql("SHOW transaction_read_only").fetchone() == ("on",)
    assert len(notes) == 1 and "reached a primary" in notes[0]  # a primary here: noted once
    with closing(open_database(db_url)) as db:  # DATABASE_URL: the primary, writable
        assert db.connection().info.dsn_parameters["target_session_attrs"] == "read-write"
        assert db.execute_sql("SHOW transaction_read_only").fetchone() == ("off",)
