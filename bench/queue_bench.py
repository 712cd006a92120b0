"""Enqueue latency and throughput, worker drain rate, worker memory.

Drain runs are gated so that only draining is timed, not Python's start-up:
the runner holds ``LOCK TABLE inbound_events IN EXCLUSIVE MODE`` (reads pass,
the claim's UPDATE waits), starts the worker process(es), waits until each is
blocked on that lock in ``pg_stat_activity``, then releases it and times until
every process has exited.

The canonical handler runs through the real ``convdb queue-worker --burst``.
The no-op figure needs a handler that does nothing, which no installed plugin
provides: it runs ``convdb.queue.worker.run`` (the function the CLI calls)
in a child process with ``handlers={"message.received": no-op}``.

A run may drain only the first ``due`` events of a larger backlog: the others
are made due a day later, so they stay in the claim index (the backlog the
claim query sees) without being drained. The figure says so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2

from . import events
from .report import percentile

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

NOOP_WORKER = """
import sys
from convdb.queue import worker
config = worker.WorkerConfig(burst=True, progress_interval=0)
worker.run(sys.argv[1], config=config, handlers={"message.received": lambda event: None})
"""


def enqueue_single(url: str, count: int) -> float:
    """p50 (ms) of ``convdb.queue.enqueue`` of one canonical event with its commit."""
    from convdb.db import closing, open_database
    from convdb.queue import enqueue

    payloads = [events.payload(i, tag=f"single-{time.time_ns()}") for i in range(count)]
    timings = []
    with closing(open_database(url)) as db:
        for p in payloads:
            started = time.perf_counter()
            enqueue("message.received", p, db=db)
            timings.append((time.perf_counter() - started) * 1000)
    return percentile(timings, 50)


def enqueue_batch(url: str, count: int, batch: int = 1000) -> float:
    """Events/s through ``convdb.queue.enqueue_many`` in batches of ``batch``."""
    from convdb.db import closing, open_database
    from convdb.queue import enqueue_many

    tag = f"batch-{time.time_ns()}"
    payloads = [events.payload(i, tag=tag) for i in range(count)]
    with closing(open_database(url)) as db:
        started = time.perf_counter()
        for start in range(0, count, batch):
            enqueue_many("message.received", payloads[start : start + batch], db=db)
        return count / (time.perf_counter() - started)


@dataclass
class Drain:
    events: int
    seconds: float
    peak_rss_mb: float = 0.0
    rss_samples: list[tuple[float, float]] = field(default_factory=list)  # (t, MB)

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def prepare_backlog(
    url: str, backlog: int, due: int, tag: str, *, mix: str = "mixed", warm: int = events.WARM
) -> None:
    """Make ``backlog`` events pending, the ``due`` oldest of them due now, the rest
    a day later. Pending events left by an earlier run are reused (topped up with
    new ones of ``mix``, see :mod:`bench.events`), so a 200,000-event backlog is
    inserted once, not once per run."""
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM inbound_events WHERE status = 'pending'")
            pending = cur.fetchone()[0]
            if pending > backlog:
                cur.execute(
                    "DELETE FROM inbound_events WHERE id IN (SELECT id FROM inbound_events "
                    "WHERE status = 'pending' ORDER BY id DESC LIMIT %s)",
                    (pending - backlog,),
                )
            elif pending < backlog:
                first = events.next_index(url)
                events.insert(url, first, backlog - pending, tag=tag, mix=mix, warm=warm)
            # Touch only the rows whose due time must change: an UPDATE leaves a
            # dead version of each row behind, in the claim index too.
            cur.execute(
                "SELECT max(id) FROM (SELECT id FROM inbound_events WHERE status = 'pending' "
                "ORDER BY id LIMIT %s) first",
                (due,),
            )
            cutoff = cur.fetchone()[0]
            cur.execute(
                "UPDATE inbound_events SET available_at = now() - interval '1 second' "
                "WHERE status = 'pending' AND id <= %s AND available_at > now()",
                (cutoff,),
            )
            cur.execute(
                "UPDATE inbound_events SET available_at = now() + interval '1 day' "
                "WHERE status = 'pending' AND id > %s AND available_at <= now()",
                (cutoff,),
            )
            cur.execute("VACUUM ANALYZE inbound_events")
    finally:
        conn.close()


def warm_up(url: str, warm: int) -> None:
    """Create the ``warm`` conversations of the mixed backlog: insert and drain
    (untimed, through ``convdb queue-worker``) one event for each."""
    first = events.next_index(url)
    events.insert(url, first, warm, tag=f"warm-{first}", mix="warmup", warm=warm)
    drain(url, processes=1, noop=False, expected=warm)


def _rss_mb(pid: int, key: str = "VmRSS") -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def drain(
    url: str,
    *,
    processes: int,
    noop: bool,
    expected: int,
    command: list[str] | None = None,
    table: str = "inbound_events",
    done: Callable[[str], int] | None = None,
) -> Drain:
    """Drain what is due with ``processes`` worker processes; time and memory.

    ``command`` replaces the worker's (bench.peers runs other queues' workers
    through the same gate): each process must wait on ``table``'s lock first,
    and ``done(url)`` counts the finished jobs."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["DATABASE_URL"] = url
    quiet = command is not None  # another queue's worker: its report is not ours
    if command is None and noop:
        command = [sys.executable, "-c", NOOP_WORKER, url]
    elif command is None:
        command = [str(BIN / "convdb"), "queue-worker", "--burst", "-q"]
    done = done or _done
    done_before = done(url)
    gate = psycopg2.connect(url)
    procs: list[subprocess.Popen] = []
    try:
        with gate.cursor() as cur:
            cur.execute(f"LOCK TABLE {table} IN EXCLUSIVE MODE")
            procs = [
                subprocess.Popen(
                    command,
                    cwd=REPO,
                    env=env,
                    stdout=subprocess.DEVNULL if quiet else None,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for _ in range(processes)
            ]
            _wait_blocked(url, procs, processes)
        samples: list[tuple[float, float]] = []
        started = time.perf_counter()
        gate.commit()
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                rss = _rss_mb(procs[0].pid)
                if rss is not None:
                    samples.append((time.perf_counter() - started, rss))
                stop.wait(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        peak = 0.0
        for p in procs:
            while p.poll() is None:
                peak = max(peak, _rss_mb(p.pid, "VmHWM") or 0.0)
                time.sleep(0.02)
        seconds = time.perf_counter() - started
        stop.set()
        sampler.join()
        for p in procs:
            err = p.stderr.read()
            if p.returncode != 0:
                raise RuntimeError(f"worker exited {p.returncode}: {err}")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        gate.close()
    finished = done(url) - done_before
    if finished < expected:
        raise RuntimeError(f"worker left work behind: {finished} of {expected} events done")
    peak = max([peak] + [mb for _, mb in samples])
    return Drain(events=expected, seconds=seconds, peak_rss_mb=peak, rss_samples=samples)


def _wait_blocked(url: str, procs: list[subprocess.Popen], count: int) -> None:
    """Wait until ``count`` sessions wait on a lock (pg_stat_activity is a
    per-transaction snapshot: poll from an autocommit connection)."""
    monitor = psycopg2.connect(url)
    monitor.autocommit = True
    deadline = time.monotonic() + 60
    try:
        with monitor.cursor() as cur:
            while True:
                cur.execute(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
                if cur.fetchone()[0] >= count:
                    return
                if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                    raise RuntimeError("worker did not reach its first claim")
                time.sleep(0.01)
    finally:
        monitor.close()


def _done(url: str) -> int:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM inbound_events WHERE status = 'done'")
            return cur.fetchone()[0]
    finally:
        conn.close()


def mark_done_rows(url: str, count: int) -> None:
    """Insert ``count`` finished events (the history a long-running queue keeps),
    all with one realistic payload: their content is never read again."""
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(
                "INSERT INTO inbound_events (event_type, payload, status, processed_at, attempts) "
                "SELECT 'message.received', %s::jsonb, 'done', now(), 1 "
                "FROM generate_series(1, %s)",
                (json.dumps(events.payload(0, tag="history")), count),
            )
            cur.execute("VACUUM ANALYZE inbound_events")
    finally:
        conn.close()
