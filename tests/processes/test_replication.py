"""Replicated PostgreSQL (issue 21): a primary and a streaming standby started here with
``initdb``, ``pg_basebackup`` and ``pg_ctl promote`` (:mod:`tests.pgcluster`), real
``convdb serve`` and ``convdb queue-worker`` processes, multi-host URLs.

- a failover (``kill -9`` of the primary) and a switchover (a clean stop) under webhook load
  while a worker drains: every webhook answered 2xx is on the new primary exactly once and
  ingested once; 503 with ``Retry-After`` meanwhile, never a 500 or a hang;
- ``convdb migrate`` on the multi-host URL migrates the primary, and the standby follows;
- reads on the replica (``CONVDB_READ_URL``) once replay caught up, :func:`wait_for_replay`,
  ``/healthz`` degraded by a lagging replica, writes decided on the primary;
- a URL whose hosts are all standbys: one-shot commands fail at once naming
  ``target_session_attrs``; the receiver and the worker wait, saying why.

One cluster for the module; each test takes a primary with a synchronous standby
(:func:`pair`), rebuilding a standby after a failover. The binaries are found, or installed
where that is possible (:func:`tests.pgcluster.find_bindir`); otherwise the module is skipped
with the reason.
"""

from __future__ import annotations

import json
import shutil
import signal
import statistics
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from convdb import migrate as migrate_lib
from convdb.replicas import current_lsn, wait_for_replay
from convdb.serve.standard import generate_secret
from convdb.testing import query, scalar

from ..pgcluster import Cluster, Node, Unavailable, replay_paused
from ..serve_support import Sender, ServeProcess, add_endpoint
from ..support import PIECE, WorkerProcess, example, run_cli, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.one_server]

PASSWORD = f"{PIECE}-cluster-pw"
COMMIT_TIMEOUT = 5


@pytest.fixture(scope="module")
def cluster():
    folder = Path(tempfile.mkdtemp(prefix="convdb-cluster-"))
    try:
        built = Cluster.create(folder)
    except Unavailable as exc:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(str(exc))
    try:
        primary = built.primary
        primary.sql("CREATE DATABASE convdb_template")
        migrate_lib.run(primary.url("convdb_template"), echo=lambda _: None)
        yield built
    finally:
        built.stop()
        shutil.rmtree(folder, ignore_errors=True)


def pair(cluster: Cluster) -> tuple[Node, Node]:
    """The primary and a streaming synchronous standby (a new one after a failover)."""
    primary = cluster.primary
    for node in [n for n in cluster.nodes if n is not primary and not n.running()]:
        cluster.remove(node)
    standbys = cluster.standbys()
    standby = standbys[0] if standbys else cluster.add_standby()
    cluster.make_synchronous()
    return primary, standby


def fresh_database(primary: Node) -> str:
    name = f"convdb_{uuid.uuid4().hex[:10]}"
    primary.sql(f'CREATE DATABASE "{name}" TEMPLATE convdb_template')
    return name


def replayed(primary: Node, standby: Node, database: str = "postgres") -> None:
    """Wait until ``standby`` has replayed everything ``primary`` committed so far."""
    lsn = primary.sql("SELECT pg_current_wal_insert_lsn()::text")[0][0]
    report = wait_for_replay(lsn, 30, url=standby.url(database))
    assert report.done, report.summary()


# --- the load: a provider that retries until it gets its 2xx ------------------------------


@dataclass
class Answer:
    msg_id: str
    status: int
    sent: float
    answered: float
    body: str = ""


@dataclass
class Load:
    """``threads`` senders posting new deliveries; a 503 is retried (after 0.1 s) until 2xx."""

    server: ServeProcess
    sender: Sender
    threads: int = 4
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        self._workers = [threading.Thread(target=self._run, args=(n,)) for n in range(self.threads)]
        for worker in self._workers:
            worker.start()

    def stop(self) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(60)

    def _run(self, n: int) -> None:
        with httpx.Client(base_url=self.server.base_url, timeout=60) as client:
            i = 0
            while not self._stop.is_set():
                msg_id = f"msg_fo_{n}_{i}"
                body, headers = self.sender.request(
                    example(message_id=f"fo-{n}-{i}"), msg_id=msg_id
                )
                while True:  # the same delivery until it is stored
                    sent = time.monotonic()
                    status = client.post(self.sender.path, content=body, headers=headers)
                    with self._lock:
                        self.answers.append(
                            Answer(msg_id, status.status_code, sent, time.monotonic(), status.text)
                        )
                    if status.status_code == 200:
                        break
                    assert status.headers.get("retry-after"), status.headers
                    time.sleep(0.1)
                i += 1

    def acked(self) -> set[str]:
        with self._lock:
            return {a.msg_id for a in self.answers if a.status == 200}

    def first_2xx_after(self, moment: float) -> float | None:
        with self._lock:
            times = [a.answered for a in self.answers if a.status == 200 and a.answered > moment]
        return min(times) if times else None

    def longest_503_window(self) -> float:
        """The longest time during which every answer was a 503."""
        longest, start = 0.0, None
        for answer in sorted(self.answers, key=lambda a: a.answered):
            if answer.status == 200:
                start = None
            elif start is None:
                start = answer.sent
            else:
                longest = max(longest, answer.answered - start)
        return longest


@pytest.mark.parametrize("how", ["kill -9", "switchover"])
def test_failover_under_load_loses_and_doubles_nothing(cluster, how):
    primary, standby = pair(cluster)
    name = fresh_database(primary)
    url = cluster.url(name, [primary, standby], password=PASSWORD)
    secret = generate_secret()
    path = add_endpoint(primary.url(name))
    replayed(primary, standby)
    env = {
        "CONVDB_TEST_SECRET": secret,
        "CONVDB_SERVE_COMMIT_TIMEOUT": str(COMMIT_TIMEOUT),
        "CONVDB_SERVE_RETRY_AFTER": "1",
    }
    server = ServeProcess(url, env=env)
    worker = WorkerProcess(url, "-q", "--lease", "10", "--poll-interval", "0.5", env=env)
    load = Load(server, Sender(path, secret))
    with server:
        try:
            load.start()
            wait_until(lambda: len(load.acked()) >= 200, timeout=60, interval=0.05)
            fault = time.monotonic()
            primary.kill9() if how == "kill -9" else primary.stop("fast")
            time.sleep(2.0)  # no primary: every answer is a 503
            standby.promote()
            promoted = time.monotonic()
            wait_until(lambda: load.first_2xx_after(promoted), timeout=15, interval=0.05)
            first_store = load.first_2xx_after(promoted) - promoted
            time.sleep(2.0)  # load on the new primary
        finally:
            load.stop()
        new_url = standby.url(name)
        acked = load.acked()
        wait_until(
            lambda: (
                scalar(new_url, "SELECT count(*) FROM inbound_events WHERE status <> 'done'") == 0
            ),
            timeout=60,
            interval=0.2,
        )
        assert worker.proc.poll() is None, worker.output  # it waited, never exited
        worker.proc.send_signal(signal.SIGTERM)
        assert worker.proc.wait(30) == 0, worker.output
        assert server.stop() == 0
    statuses = {a.status for a in load.answers}
    durations = [a.answered - a.sent for a in load.answers]
    keys = [
        k.rsplit(":", 1)[1] for (k,) in query(new_url, "SELECT idempotency_key FROM inbound_events")
    ]
    found = acked & set(keys)
    messages = query(new_url, "SELECT count(*), count(DISTINCT provider_message_id) FROM messages")
    sent = len({a.msg_id for a in load.answers})
    print(
        f"\n{how}: {sent} sent, {len(acked)} acknowledged, {len(found)} found on the new primary, "
        f"{len(keys) - len(set(keys))} duplicated; {len(load.answers)} answers "
        f"({sum(a.status == 503 for a in load.answers)} 503); longest 503 window "
        f"{load.longest_503_window():.2f} s; first store {first_store:.2f} s after the promotion; "
        f"slowest answer {max(durations):.2f} s (median {statistics.median(durations) * 1000:.0f} "
        f"ms); fault at +{fault - load.answers[0].sent:.1f} s; messages {messages[0]}"
    )
    assert statuses <= {200, 503}  # never a 500
    assert max(durations) < COMMIT_TIMEOUT + 2  # never a hang
    assert 503 in statuses  # there was a window without a primary
    assert first_store < 10
    assert len(keys) == len(set(keys))  # stored exactly once
    missing = {  # what the sender saw of a delivery that is not there: for the failure's message
        m: [
            (a.status, a.body, round(a.sent - fault, 3), round(a.answered - fault, 3))
            for a in load.answers
            if a.msg_id == m
        ]
        for m in acked - found
    }
    assert found == acked, missing  # every acknowledged webhook is on the new primary
    assert sent == len(acked)  # the provider's retries got every delivery stored
    assert messages == [(len(keys), len(keys))]  # each ingested exactly once
    assert scalar(new_url, "SELECT count(*) FROM inbound_events WHERE attempts > 1") <= 10
    assert PIECE not in server.output + worker.output
    assert "no host of" in server.output or "lost the database connection" in server.output


def test_migrate_on_the_multi_host_url_migrates_the_primary_and_the_standby_follows(cluster):
    primary, standby = pair(cluster)
    primary.sql("CREATE DATABASE convdb_migrated")
    # The standby first: libpq skips it (target_session_attrs=read-write) for the primary.
    url = cluster.url("convdb_migrated", [standby, primary], password=PASSWORD)
    for command in (("pw_migrate", "migrate"), ("convdb", "migrate"), ("convdb", "status")):
        result = run_cli(*command, env={"DATABASE_URL": url}, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        assert PIECE not in result.stdout + result.stderr
    assert standby.in_recovery()  # never written, never promoted
    replayed(primary, standby)
    on_standby = standby.url("convdb_migrated")
    assert query(on_standby, "SELECT to_regclass('inbound_events') IS NOT NULL") == [(True,)]
    history = "SELECT count(*) FROM migratehistory"
    assert scalar(on_standby, history) == scalar(primary.url("convdb_migrated"), history) > 0


def test_reads_on_the_replica_return_what_the_primary_committed_once_replayed(cluster):
    primary, standby = pair(cluster)
    name = fresh_database(primary)
    url = cluster.url(name, [primary, standby], password=PASSWORD)
    read_url = cluster.url(name, [standby], password=PASSWORD)
    env = {"DATABASE_URL": url, "CONVDB_READ_URL": read_url}

    def enqueue(n: int, tag: str) -> None:
        lines = "\n".join(json.dumps(example(message_id=f"{tag}-{i}")) for i in range(n))
        result = run_cli("convdb", "enqueue", "message.received", env=env, stdin=lines)
        assert result.returncode == 0, result.stderr

    def pending_on_replica() -> int:
        result = run_cli("convdb", "queue", "stats", env=env)
        assert result.returncode == 0, result.stderr
        assert "note:" not in result.stderr  # a standby: no note
        return int(result.stdout.split("(all)")[1].split()[0])

    enqueue(3, "first")
    replayed(primary, standby)
    assert pending_on_replica() == 3
    replay_paused(standby, True)
    try:
        enqueue(2, "second")
        lsn = current_lsn(_conn(primary.url(name)))
        late = wait_for_replay(lsn, 0.5, url=read_url)
        assert not late.done and "replay behind" in late.summary(), late.summary()
        assert pending_on_replica() == 3  # stale: what the replica has replayed
    finally:
        replay_paused(standby, False)
    report = wait_for_replay(lsn, 30, url=read_url)
    assert report.done and report.replayed == [f"127.0.0.1:{standby.port}"], report.summary()
    assert pending_on_replica() == 5


def test_the_read_url_opened_as_any_url_gets_a_read_only_session(cluster, monkeypatch):
    """Search and the console open ``resolve_read_url()`` themselves: on a standby that must
    connect (not be refused as not writable) and be read-only."""
    from convdb.db import closing, open_database, resolve_read_url

    primary, standby = pair(cluster)
    name = fresh_database(primary)
    replayed(primary, standby)
    monkeypatch.setenv("DATABASE_URL", cluster.url(name, [primary, standby]))
    monkeypatch.setenv("CONVDB_READ_URL", cluster.url(name, [primary, standby][::-1]))
    with closing(open_database(resolve_read_url())) as db:
        assert db.execute_sql("SELECT pg_is_in_recovery()").fetchone() == (True,)
        assert db.execute_sql("SHOW transaction_read_only").fetchone() == ("on",)
    monkeypatch.setenv("CONVDB_READ_URL", cluster.url(name, [standby]))
    with closing(open_database(resolve_read_url())) as db:  # a standby alone: prefer-standby
        assert db.execute_sql("SELECT count(*) FROM inbound_events").fetchone() == (0,)
    # The console reads its pages through the receiver's connections (convdb.serve.pg).
    from convdb.serve.pg import open_connection

    conn = open_connection(resolve_read_url(), name="convdb console", statement_timeout=2)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_is_in_recovery()")
            assert cur.fetchone() == (True,)
    finally:
        conn.close()


def _conn(url: str):
    import psycopg2

    conn = psycopg2.connect(url)
    conn.autocommit = True
    return conn


def test_a_lagging_replica_degrades_healthz_and_writes_are_decided_on_the_primary(cluster):
    primary, standby = pair(cluster)
    name = fresh_database(primary)
    url = cluster.url(name, [primary, standby], password=PASSWORD)
    read_url = cluster.url(name, [standby], password=PASSWORD)
    secret = generate_secret()
    env = {
        "CONVDB_TEST_SECRET": secret,
        "CONVDB_READ_URL": read_url,
        "CONVDB_READ_MAX_LAG": "0.5",
    }
    server = ServeProcess(url, env=env)
    with server, server.client() as client:
        assert client.get("/healthz").json()["status"] == "ok"
        replay_paused(standby, True)
        try:
            # An endpoint added now is on the primary only; the receiver takes it at once.
            path = add_endpoint(primary.url(name))
            sender = Sender(path, secret)
            # A miss re-reads the endpoints at most once a second: then it is found.
            answer = wait_until(
                lambda: (
                    (a := sender.post(client, example(message_id="lagging"))).status_code != 404
                    and a
                ),
                timeout=5,
                interval=0.3,
            )
            assert answer.status_code == 200
            listed = run_cli(
                "convdb",
                "providers",
                "list",
                env={"DATABASE_URL": url, "CONVDB_READ_URL": read_url},
            )
            assert "no endpoints" in listed.stdout  # the replica has not replayed it yet

            def degraded():
                health = client.get("/healthz")
                return (
                    health.status_code == 200 and health.json()["status"] == "degraded" and health
                )

            health = wait_until(degraded, timeout=20, interval=0.5).json()
            assert health["replicas"][0]["role"] == "standby"
            assert health["replicas"][0]["lag_seconds"] > 0.5
            assert "lags" in health["degraded"][0]
        finally:
            replay_paused(standby, False)
        wait_until(
            lambda: client.get("/healthz").json()["status"] == "ok", timeout=20, interval=0.5
        )
        assert server.stop() == 0
    assert PIECE not in server.output


def test_hosts_that_are_all_standbys(cluster):
    primary, standby = pair(cluster)
    name = fresh_database(primary)
    replayed(primary, standby)
    url = cluster.url(name, [standby, standby], password=PASSWORD)
    env = {"DATABASE_URL": url}
    for command in (
        ("convdb", "migrate"),
        ("convdb", "status"),
        ("convdb", "enqueue", "message.received"),
        ("convdb", "queue-worker", "--burst"),
        ("pw_migrate", "migrate"),
    ):
        started = time.monotonic()
        result = run_cli(*command, env=env, timeout=60, stdin="{}")
        assert result.returncode == 1, (command, result.stdout, result.stderr)
        assert time.monotonic() - started < 15, command  # at once: no waiting for a promotion
        assert "target_session_attrs=read-write" in result.stderr, (command, result.stderr)
        assert "Promote a standby" in result.stderr, (command, result.stderr)
        assert PIECE not in result.stdout + result.stderr

    secret = generate_secret()
    path = add_endpoint(primary.url(name))
    replayed(primary, standby)
    server = ServeProcess(url, env={"CONVDB_TEST_SECRET": secret})
    worker = WorkerProcess(url, "--poll-interval", "0.5")
    with server, server.client() as client:
        answer = Sender(path, secret).post(client, example(message_id="nowhere"))
        assert (answer.status_code, answer.headers.get("retry-after")) == (503, "5")
        assert client.get("/healthz").status_code == 503
        time.sleep(2)
        assert worker.proc.poll() is None, worker.output  # waits, no exit
        worker.proc.send_signal(signal.SIGTERM)
        assert worker.proc.wait(30) == 0
        assert server.stop() == 0
    for output in (server.output, worker.output):
        assert "target_session_attrs=read-write" in output, output  # says why
        assert PIECE not in output
