"""Retention beside a draining worker: the drain's rate with and without it, and the
longest lock wait of an ingestion transaction meanwhile.

::

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python -m bench.retention_bench [--messages 1000000] [--events 20000]

A history of ``--messages`` messages is loaded with plain SQL
(:mod:`bench.loader`, 1,000 customers whose keys are the canonical events'),
each customer given a retention policy whose cutoff falls at the oldest 10%.
Then, on two copies of it, a ``convdb queue-worker --burst`` drains
``--events`` canonical events (:mod:`bench.events`, sent after the cutoff):
alone, and while :func:`convdb.privacy.apply_retention` deletes the 10%. The
worker's backends are sampled every 10 ms in ``pg_stat_activity``: the
longest run of samples waiting on a lock is the longest lock wait seen.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import threading
import time
import uuid

import psycopg2

from convdb import migrate as migrate_lib
from convdb.db import open_database
from convdb.privacy import apply_retention

from . import events, loader
from .loader import Scale
from .runner import database_url

BIN = __import__("pathlib").Path(sys.executable).parent
START = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def _admin(url: str, sql: str) -> None:
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        conn.cursor().execute(sql)
    finally:
        conn.close()


def _one(url: str, sql: str):
    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchone()
    finally:
        conn.close()


class LockWatch(threading.Thread):
    """Samples the worker's backends; the longest lock wait seen (seconds)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.longest, self.stop = url, 0.0, threading.Event()

    def run(self) -> None:
        conn = psycopg2.connect(self.url)
        conn.autocommit = True
        since: dict[int, float] = {}
        with conn.cursor() as cur:
            while not self.stop.is_set():
                cur.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND query NOT LIKE '%%retention%%' "
                    "AND pid <> pg_backend_pid() AND application_name <> 'bench-retention'"
                )
                now = time.monotonic()
                waiting = {r[0] for r in cur.fetchall()}
                for pid in waiting:
                    since.setdefault(pid, now)
                    self.longest = max(self.longest, now - since[pid])
                for pid in set(since) - waiting:
                    del since[pid]
                time.sleep(0.01)
        conn.close()


def run_once(base: str, template: str, n: int, cutoff: dt.datetime, with_retention: bool):
    name = f"convdb_retention_run_{uuid.uuid4().hex[:8]}"
    _admin(base, f"CREATE DATABASE {name} TEMPLATE {template}")
    url = database_url(base, name)
    try:
        events.insert(url, events.next_index(url), n, tag=f"r{time.time_ns()}")
        _admin(
            url,
            "UPDATE inbound_events SET payload = jsonb_set(payload, '{sent_at}', "
            "'\"2026-06-01T00:00:00Z\"')",
        )
        _admin(url, "VACUUM ANALYZE")
        watch = LockWatch(url)
        watch.start()
        deleted = {}
        retention = None
        if with_retention:

            def apply() -> None:
                db = open_database(url, application_name="bench-retention")
                try:
                    results = apply_retention(db, batch=1000, now=cutoff + dt.timedelta(days=1))
                    deleted["messages"] = sum(c.get("messages", 0) for c in results.values())
                finally:
                    db.close()

            retention = threading.Thread(target=apply)
        cmd = [str(BIN / "convdb"), "queue-worker", "--burst", "-q"]
        started = time.perf_counter()
        worker = subprocess.Popen(cmd, env={**os.environ, "DATABASE_URL": url})
        if retention:
            retention.start()
        code = worker.wait()
        seconds = time.perf_counter() - started
        if retention:
            retention.join()
        retention_seconds = time.perf_counter() - started
        watch.stop.set()
        watch.join()
        if code != 0:
            raise SystemExit(f"worker failed: {code}")
        return n / seconds, watch.longest, deleted.get("messages", 0), retention_seconds
    finally:
        _admin(base, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    base = os.environ["DATABASE_URL"]
    template = f"convdb_retention_tmpl_{uuid.uuid4().hex[:8]}"
    _admin(base, f"CREATE DATABASE {template}")
    url = database_url(base, template)
    try:
        migrate_lib.run(url, echo=lambda _: None)
        scale = Scale(customers=1000, conversations=args.messages // 20, messages=args.messages)
        print(f"loading {args.messages:,} messages ...", flush=True)
        loader.load(url, scale, echo=lambda _: None)
        _admin(
            url,
            "UPDATE customers SET key = 'bench-' || (id - (SELECT min(id) FROM customers));"
            "INSERT INTO retention_policies (customer_id, days) SELECT id, 1 FROM customers",
        )
        # the cutoff: the oldest 10% of the messages
        (cutoff,) = _one(
            url,
            f"SELECT sent_at FROM messages ORDER BY sent_at OFFSET {args.messages // 10} LIMIT 1",
        )
        _admin(url, "VACUUM ANALYZE")
        for _ in range(args.runs):
            alone, wait_alone, _, _ = run_once(base, template, args.events, cutoff, False)
            both, wait_both, deleted, took = run_once(base, template, args.events, cutoff, True)
            print(
                f"drain alone {alone:,.0f} events/s (longest lock wait {wait_alone:.2f} s); "
                f"with retention {both:,.0f} events/s (longest lock wait {wait_both:.2f} s), "
                f"ratio {both / alone:.2f}; retention deleted {deleted:,} messages in "
                f"{took:.0f} s",
                flush=True,
            )
    finally:
        _admin(base, f"DROP DATABASE IF EXISTS {template} WITH (FORCE)")


if __name__ == "__main__":
    main()
