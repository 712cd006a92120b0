"""``python -m bench.profiling``: where a drained event and an acknowledged webhook spend time.

::

    .venv/bin/python -m bench.profiling drain --kind noop       # 20,000 events
    .venv/bin/python -m bench.profiling drain --kind canonical  # the mixed backlog
    .venv/bin/python -m bench.profiling serve                   # convdb serve under wrk

Both run on a private PostgreSQL (the server binaries the tests use,
:mod:`tests.pgcluster`; durable: ``fsync`` and ``synchronous_commit`` on)
with ``pg_stat_statements`` loaded, started in a temporary folder and
stopped at the end, so the SQL side is measured per statement without
touching a shared server.

- ``drain``: one ``convdb.queue.worker.run`` in this process (burst, one
  thread; the no-op handler or the installed plugins' canonical ones) under
  :mod:`cProfile`; prints the Python functions by own time and by
  cumulative time in µs per event, and the statements by total execution
  time in the server (``pg_stat_statements``), in µs per event. It first
  drains a same-size backlog without the profiler: the profiler's own
  overhead inflates Python calls, so compare shares, not sums.
- ``serve``: ``convdb serve`` under a 64-connection ``wrk`` load, sampled by
  ``py-spy`` (``pip install py-spy``; it needs ptrace) for ``--seconds``;
  prints the functions by own and by inclusive share of the server's samples
  and, with the server's CPU time per webhook (``/proc``), in µs per webhook.
  Without py-spy (or ptrace) the app runs in this process under cProfile
  with uvicorn, loaded by the Python generator.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import psycopg2

from convdb import migrate as migrate_lib
from convdb.cli.render import format_table

from . import events, loadgen, queue_bench
from .report import say
from .serve_cpu import CpuMeter, _pg_pids, _tree
from .serve_figures import _endpoint, _signer, _start

STATEMENTS = """
SELECT calls, total_exec_time, toplevel, regexp_replace(query, '\\s+', ' ', 'g')
  FROM pg_stat_statements
 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
 ORDER BY total_exec_time DESC
 LIMIT %s
"""


def private_server(folder: Path):
    """A durable private PostgreSQL with pg_stat_statements; (cluster, admin URL)."""
    from tests.pgcluster import Cluster

    cluster = Cluster.create(folder, fsync=True)
    node = cluster.primary
    node.configure(
        shared_preload_libraries="pg_stat_statements",
        # statements run by triggers and functions too, beside their caller
        **{"pg_stat_statements.track": "all"},
        synchronous_commit="on",
        track_io_timing="on",
    )
    node.stop()
    node.start()
    return cluster, node.url()


def _sql(url: str, sql: str, params=None):
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else None
    finally:
        conn.close()


def statements(url: str, events_: int, top: int) -> str:
    rows = _sql(url, STATEMENTS, (top,))
    total = sum(r[1] for r in rows if r[2])  # nested statements are in their caller's time
    out = [
        [
            f"{calls:,}",
            f"{ms:,.0f} ms",
            f"{ms * 1000 / events_:,.1f}",
            (f"{ms / total:.0%}" if total else "-") if toplevel else "(nested)",
            text[:110],
        ]
        for calls, ms, toplevel, text in rows
    ]
    return format_table(["calls", "total", "µs/event", "share", "statement"], out)


def python_profile(profile: cProfile.Profile, per: int, top: int, unit: str) -> str:
    stats = pstats.Stats(profile, stream=io.StringIO())
    rows = []
    for (file, line, name), (_cc, calls, own, cumulative, _callers) in stats.stats.items():
        where = f"{Path(file).parent.name}/{Path(file).name}:{line}" if line else file
        rows.append((own, cumulative, calls, f"{name} ({where})"))
    out = []
    for title, key in (("own time", 0), ("cumulative time", 1)):
        chosen = sorted(rows, key=lambda r: r[key], reverse=True)[:top]
        out.append(f"Python, by {title} ({unit} = per {unit.split('/')[1]}):")
        out.append(
            format_table(
                ["own " + unit, "cumulative " + unit, "calls", "function"],
                [
                    [f"{o * 1e6 / per:,.1f}", f"{c * 1e6 / per:,.1f}", f"{n:,}", f]
                    for o, c, n, f in chosen
                ],
            )
        )
    return "\n".join(out)


# --- drain -------------------------------------------------------------------------------


def _backlog(url: str, kind: str, count: int, warm: int, tag: str) -> None:
    if kind == "noop":
        _sql(url, "TRUNCATE inbound_events")
        events.insert(url, 1, count, tag=tag)
        _sql(url, "VACUUM ANALYZE inbound_events")
    else:
        queue_bench.prepare_backlog(url, count, count, tag=tag, warm=warm)


def _drain(url: str, kind: str, profile: cProfile.Profile | None) -> tuple[float, float]:
    from convdb.queue import worker

    config = worker.WorkerConfig(burst=True, progress_interval=0)
    handlers = {"message.received": lambda event: None} if kind == "noop" else None
    original = worker.Worker._thread_main

    def profiled(self, n: int) -> None:  # the worker's thread, where the work is
        profile.enable()
        try:
            original(self, n)
        finally:
            profile.disable()

    if profile is not None:
        worker.Worker._thread_main = profiled
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        worker.run(url, config=config, handlers=handlers, echo=lambda _: None)
    finally:
        worker.Worker._thread_main = original
    return time.perf_counter() - wall, time.process_time() - cpu


def drain(admin: str, args) -> None:
    from .runner import database_url

    name = f"convdb_profile_{os.getpid()}"
    _sql(admin, f'CREATE DATABASE "{name}"')
    url = database_url(admin, name)
    migrate_lib.run(url, echo=lambda _: None)
    _sql(url, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    os.environ["DATABASE_URL"] = url
    if args.kind == "canonical":
        say(f"profile: warm-up: {args.warm:,} conversations")
        queue_bench.warm_up(url, args.warm)
    _backlog(url, args.kind, args.events, args.warm, "plain")
    wall, cpu = _drain(url, args.kind, None)
    print(
        f"{args.kind} drain of {args.events:,} events, no profiler: {args.events / wall:,.0f}/s, "
        f"{wall * 1e6 / args.events:,.1f} µs/event wall, {cpu * 1e6 / args.events:,.1f} µs/event "
        "worker CPU"
    )
    _backlog(url, args.kind, args.events, args.warm, "profiled")
    _sql(url, "SELECT pg_stat_statements_reset()")
    profile = cProfile.Profile()
    wall, cpu = _drain(url, args.kind, profile)
    print(
        f"{args.kind} drain, under cProfile (the worker thread): {args.events / wall:,.0f}/s, "
        f"{wall * 1e6 / args.events:,.1f} µs/event wall, {cpu * 1e6 / args.events:,.1f} µs/event "
        "worker CPU"
    )
    print(python_profile(profile, args.events, args.top, "µs/event"))
    print("SQL, by total execution time in the server (pg_stat_statements):")
    print(statements(url, args.events, args.top))


# --- serve ---------------------------------------------------------------------------------


# The start-up frames (click, uvicorn.run, asyncio.run) above the event loop.
STARTUP = (
    "(click/core.py)",
    "(cli/__init__.py)",
    "(cli/serve.py)",
    "(serve/server.py)",
    "(uvicorn/main.py)",
    "(uvicorn/_compat.py)",
    "(asyncio/runners.py)",
    "(uvicorn/server.py)",
    "(<string>)",
    "(asyncio/base_events.py)",
    "(asyncio/events.py)",
    "(threading.py)",
)


def _collapsed(path: Path) -> tuple[Counter, Counter, int]:
    own: Counter = Counter()
    inclusive: Counter = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = [f.split(" (")[0] + " (" + f.split(" (")[-1] for f in stack.split(";")]
        frames = [_short(f) for f in frames]
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    return own, inclusive, total


def _short(frame: str) -> str:
    """``function (.../site-packages/pkg/mod.py:12)`` -> ``function (pkg/mod.py)``."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    parts = Path(where).parts
    return f"{name} ({'/'.join(parts[-2:])})"


def serve(admin: str, args) -> None:
    from convdb.serve.standard import generate_secret

    from .runner import database_url

    pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(pyspy).exists():
        raise SystemExit("py-spy is not installed: pip install py-spy")
    name = f"convdb_profile_{os.getpid()}"
    _sql(admin, f'CREATE DATABASE "{name}"')
    url = database_url(admin, name)
    migrate_lib.run(url, echo=lambda _: None)
    _sql(url, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    secret = generate_secret()
    path = _endpoint(url)
    proc, port = _start(url, args.variant, secret)
    with tempfile.TemporaryDirectory(prefix="convdb-profile-") as folder:
        out = Path(folder) / "stacks.txt"
        try:
            sign = _signer(path, secret, 0, port)
            loadgen.latencies(port, sign(200, "warm"), 4)
            requests = sign(int(args.seconds * 12_000), "prof_")
            _sql(url, "SELECT pg_stat_statements_reset()")
            server, pg = CpuMeter(), CpuMeter()
            server.start(_tree(proc.pid))
            pg.start(_pg_pids(url))
            spy = subprocess.Popen(
                [
                    pyspy,
                    "record",
                    "-p",
                    str(proc.pid),
                    "-d",
                    str(round(args.seconds)),
                    "-r",
                    "250",
                    "-f",
                    "raw",
                    "-o",
                    str(out),
                    # only the thread holding the GIL (running Python), sampled
                    # without stopping the process
                    "--gil",
                    "--nonblocking",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            load = loadgen.wrk_load(port, requests, 64, args.seconds)
            server_cpu = server.stop(_tree(proc.pid))
            pg_cpu = pg.stop(_pg_pids(url))
            _, err = spy.communicate(timeout=60)
            if spy.returncode != 0:
                raise SystemExit(f"py-spy failed: {err.strip()[-500:]}")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        webhooks = load.count
        server_us = server_cpu * 1e6 / webhooks
        print(
            f"{args.variant} receiver, 64 connections, {args.seconds:g} s (wrk): "
            f"{load.rate:,.0f} webhooks/s, "
            f"server CPU {server_us:,.0f} µs/webhook, PostgreSQL {pg_cpu * 1e6 / webhooks:,.0f} "
            f"µs/webhook; p99 {load.p99_ms:.0f} ms"
        )
        own, inclusive, total = _collapsed(out)
    for frame in list(inclusive):
        if frame.endswith(STARTUP):
            del inclusive[frame]  # every sample of the event loop is under these
    for title, counter in (("own", own), ("inclusive", inclusive)):
        print(f"Python (py-spy --gil, {total:,} samples), by {title} share:")
        print(
            format_table(
                ["share", "≈ µs/webhook", "function (file)"],
                [
                    [f"{n / total:.1%}", f"{n / total * server_us:,.0f}", frame]
                    for frame, n in counter.most_common(args.top)
                ],
            )
        )
    print("SQL, by total execution time in the server (pg_stat_statements):")
    print(statements(url, webhooks, args.top).replace("µs/event", "µs/webhook"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.profiling", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="what", required=True)
    d = sub.add_parser("drain", help="cProfile and pg_stat_statements of one worker's drain")
    d.add_argument("--kind", choices=["noop", "canonical"], default="noop")
    d.add_argument("--events", type=int, default=20_000)
    d.add_argument("--warm", type=int, default=events.WARM)
    d.add_argument("--top", type=int, default=25)
    s = sub.add_parser("serve", help="py-spy and pg_stat_statements of convdb serve under load")
    s.add_argument("--seconds", type=float, default=10.0)
    s.add_argument(
        "--variant",
        choices=["group", "naive", "empty"],
        default="group",
        help="convdb serve (group), bench.serve_naive or bench.serve_empty (the floor)",
    )
    s.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    if not 1 <= getattr(args, "events", 1) <= 10_000_000:
        parser.error("--events must be between 1 and 10,000,000")
    if not 1 <= args.top <= 200:
        parser.error("--top must be between 1 and 200")
    with tempfile.TemporaryDirectory(prefix="convdb-profile-pg-") as folder:
        cluster, admin = private_server(Path(folder))
        try:
            (drain if args.what == "drain" else serve)(admin, args)
        finally:
            cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
