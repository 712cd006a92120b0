"""Quick, rerunnable measurements of the worker and enqueue fast paths.

::

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \
        .venv/bin/python -m bench.drain_quick [--events N] [--runs 3] [--only noop,enqueue]

Each drain run gets a fresh copy of a migrated template database with a
20,000-event backlog of canonical ``message.received`` events (the mix of
:mod:`bench.events`) or of the same events under a no-op handler, drained by
one (or ``--processes N``) ``convdb queue-worker --burst`` process(es); ``--mix``
picks which conversations the events go to (:mod:`bench.events`). Prints
the median (and min-max) events/s of ``--runs`` runs, the ``enqueue_many``
rate and the p50 of a single ``enqueue`` with its commit.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psycopg2

from . import events
from .runner import database_url as db_url

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parent.parent
NOOP = """
import sys
from convdb.queue import worker
config = worker.WorkerConfig(burst=True, progress_interval=0, batch_size=int(sys.argv[2]))
worker.run(sys.argv[1], config=config, handlers={"message.received": lambda event: None})
"""


def admin(url: str, sql: str) -> None:
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        conn.cursor().execute(sql)
    finally:
        conn.close()


def drain(
    base: str,
    template: str,
    kind: str,
    n: int,
    processes: int,
    batch: int,
    concurrency: int,
    mix: str = "spread",
) -> float:
    name = f"convdb_quick_{os.getpid()}"
    admin(base, f"DROP DATABASE IF EXISTS {name}")
    admin(base, f"CREATE DATABASE {name} TEMPLATE {template}")
    url = db_url(base, name)
    try:
        env = {**os.environ, "DATABASE_URL": url}
        warm = 0
        if mix == "mixed":  # its warm conversations first, untimed
            warm = events.WARM
            events.insert(url, 1, warm, tag="warm", mix="warmup")
            burst = [str(BIN / "convdb"), "queue-worker", "--burst", "-q"]
            subprocess.run(burst, env=env, cwd=REPO, check=True)
        first = events.next_index(url)
        events.insert(url, first, n, tag=f"q{time.time_ns()}", mix=mix)
        admin(url, "VACUUM ANALYZE")
        if kind == "noop":
            cmd = [sys.executable, "-c", NOOP, url, str(batch)]
        else:
            cmd = [str(BIN / "convdb"), "queue-worker", "--burst", "-q", "--batch-size", str(batch)]
            cmd += ["--concurrency", str(concurrency)]
        started = time.perf_counter()
        procs = [subprocess.Popen(cmd, env=env, cwd=REPO) for _ in range(processes)]
        codes = [p.wait() for p in procs]
        seconds = time.perf_counter() - started
        conn = psycopg2.connect(url)
        with conn, conn.cursor() as cur:
            cur.execute("SELECT status, count(*) FROM inbound_events GROUP BY 1")
            counts = dict(cur.fetchall())
            cur.execute("SELECT count(*) FROM messages")
            messages = cur.fetchone()[0]
        conn.close()
        if codes != [0] * processes or counts != {"done": n + warm}:
            raise SystemExit(f"drain failed: exit codes {codes}, statuses {counts}")
        if kind == "canonical" and messages != n + warm:
            raise SystemExit(f"drain failed: {messages} messages for {n} events")
        return n / seconds
    finally:
        admin(base, f"DROP DATABASE IF EXISTS {name}")


def enqueue_rates(base: str, template: str, n: int) -> tuple[float, float]:
    from convdb.db import closing, open_database
    from convdb.queue import enqueue, enqueue_many

    name = f"convdb_quick_enq_{os.getpid()}"
    admin(base, f"DROP DATABASE IF EXISTS {name}")
    admin(base, f"CREATE DATABASE {name} TEMPLATE {template}")
    try:
        with closing(open_database(db_url(base, name))) as db:
            rates = []
            for run in range(3):
                payloads = [events.payload(i, tag=f"b{run}") for i in range(n)]
                keys = [f"b{run}-{i}" for i in range(n)]
                started = time.perf_counter()
                enqueue_many("message.received", payloads, idempotency_keys=keys, db=db)
                rates.append(n / (time.perf_counter() - started))
            payloads = [events.payload(i, tag="single") for i in range(1000)]
            timings = []
            for p in payloads:
                started = time.perf_counter()
                enqueue("message.received", p, db=db)
                timings.append((time.perf_counter() - started) * 1000)
        return statistics.median(rates), statistics.median(timings)
    finally:
        admin(base, f"DROP DATABASE IF EXISTS {name}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=1, help="threads per canonical worker")
    parser.add_argument("--only", default="canonical,noop,enqueue")
    parser.add_argument(
        "--mix",
        choices=("spread", "mixed", "fresh"),
        default="spread",
        help="which conversations the events go to (bench/events.py); spread and fresh: "
        "every event opens one on the fresh database; mixed: 1 in 10 does",
    )
    args = parser.parse_args()
    base = os.environ["DATABASE_URL"]
    template = f"convdb_quick_tmpl_{os.getpid()}"
    admin(base, f"DROP DATABASE IF EXISTS {template}")
    admin(base, f"CREATE DATABASE {template}")
    try:
        env = {**os.environ, "DATABASE_URL": db_url(base, template)}
        subprocess.run([str(BIN / "convdb"), "migrate"], env=env, check=True, capture_output=True)
        for kind in args.only.split(","):
            if kind == "enqueue":
                rate, p50 = enqueue_rates(base, template, args.events)
                print(f"enqueue_many {args.events}: {rate:,.0f} events/s; single p50 {p50:.2f} ms")
                continue
            rates = [
                drain(
                    base,
                    template,
                    kind,
                    args.events,
                    args.processes,
                    args.batch,
                    args.concurrency,
                    args.mix,
                )
                for _ in range(args.runs)
            ]
            print(
                f"{kind} drain, {args.processes} process(es), batch {args.batch}, "
                f"{args.concurrency if kind == 'canonical' else 1} thread(s), "
                f"{args.events} events ({args.mix}): "
                f"median {statistics.median(rates):,.0f} events/s "
                f"(min {min(rates):,.0f}, max {max(rates):,.0f})",
                flush=True,
            )
    finally:
        admin(base, f"DROP DATABASE IF EXISTS {template}")


if __name__ == "__main__":
    main()
