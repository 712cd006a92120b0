"""``python -m bench.serve_cpu``: the receiver's CPU time per acknowledged webhook.

::

    DATABASE_URL=postgresql://... .venv/bin/python -m bench.serve_cpu [--runs 2] [--seconds 10]
    .venv/bin/python -m bench.serve_cpu --smoke

Requests per second at 64 connections move with whatever else runs on the
machine (the load generator shares its cores with the server and
PostgreSQL). What the server spends does not, or much less: this script
reads the CPU time (user + system, ``/proc/PID/stat``) of the receiver's
process and of PostgreSQL's processes over a 64-connection load, and divides
by the webhooks answered 200. Three servers, one after the other in each
run, each on a fresh copy of a migrated database:

- ``empty``: an empty Starlette endpoint (:mod:`bench.serve_empty`) on the
  same server settings (uvicorn through ``convdb.serve.server.run``), no
  database: the HTTP floor;
- ``group``: ``convdb serve`` (group commit);
- ``naive``: the same app storing each webhook with one INSERT and one commit
  (:mod:`bench.serve_naive`).

PostgreSQL's share: every backend connected to the receiver's database (found
in ``pg_stat_activity`` before and after the load; ones that start during it
count from zero) and the server's background processes (WAL writer,
checkpointer, background writer, ...), which also work for other databases
of a shared server: on a busy server the PostgreSQL column is an upper bound.
Load: ``wrk`` (two threads) when installed, else the Python generator of
:mod:`bench.loadgen` (always with ``--smoke``), pre-signed Standard Webhooks
requests, each a new delivery.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import psycopg2

from convdb import migrate as migrate_lib
from convdb.cli.render import format_table

from . import loadgen
from .report import say
from .serve_figures import _endpoint, _signer, _start

VARIANTS = ("empty", "group", "naive")
LABELS = {
    "empty": "empty Starlette endpoint (uvicorn, no database)",
    "group": "convdb serve (group commit)",
    "naive": "naive (one INSERT and commit each)",
}
TICKS = os.sysconf("SC_CLK_TCK")

# Backends of the receiver's database, and the server's own processes.
PG_PROCESSES = """
SELECT pid FROM pg_stat_activity
 WHERE pid <> pg_backend_pid()
   AND (datname = current_database() OR datname IS NULL)
"""


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` (all its threads); None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # after the command: state(0) ... utime(11) stime(12)
    return (int(fields[11]) + int(fields[12])) / TICKS


def _tree(pid: int) -> list[int]:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return [pid] + [p for c in children for p in _tree(int(c))]


def _pg_pids(url: str) -> list[int]:
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(PG_PROCESSES)
            return [r[0] for r in cur.fetchall()]
    finally:
        conn.close()


class CpuMeter:
    """CPU seconds spent by a set of processes between :meth:`start` and :meth:`stop`."""

    def __init__(self) -> None:
        self.before: dict[int, float] = {}
        self.last: dict[int, float] = {}

    def start(self, pids: list[int]) -> None:
        for pid in pids:
            value = cpu_seconds(pid)
            if value is not None:
                self.before[pid] = self.last[pid] = value

    def stop(self, pids: list[int]) -> float:
        for pid in set(pids) | set(self.before):
            value = cpu_seconds(pid)
            if value is not None:
                self.last[pid] = value
        return sum(v - self.before.get(pid, 0.0) for pid, v in self.last.items())


@dataclass
class Result:
    variant: str
    rate: float
    webhooks: int
    server_us: float
    pg_us: float
    p50_ms: float
    p99_ms: float
    tool: str

    @property
    def total_us(self) -> float:
        return self.server_us + self.pg_us


def measure(url: str, variant: str, run: int, seconds: float, use_wrk: bool) -> Result:
    from convdb.serve.standard import generate_secret

    secret = generate_secret()
    path = _endpoint(url)
    proc, port = _start(url, variant, secret)
    try:
        sign = _signer(path, secret, run, port)
        loadgen.latencies(port, sign(200, "warm"), 4)
        requests = sign(int(seconds * 12_000), "cpu_")  # more than any variant answers
        server, pg = CpuMeter(), CpuMeter()
        server.start(_tree(proc.pid))
        pg.start(_pg_pids(url))
        if use_wrk:
            load = loadgen.wrk_load(port, requests, 64, seconds)
        else:
            load = loadgen.python_load(port, requests, 64, seconds)
        server_cpu = server.stop(_tree(proc.pid))
        pg_cpu = pg.stop(_pg_pids(url))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    if load.errors:
        raise RuntimeError(f"{variant}: {load.errors} requests not answered 200")
    webhooks = load.count
    return Result(
        variant,
        load.rate,
        webhooks,
        server_cpu / webhooks * 1e6,
        pg_cpu / webhooks * 1e6,
        load.p50_ms,
        load.p99_ms,
        load.tool,
    )


def report(results: list[Result]) -> str:
    """The table: per variant, each run's figure (run 1 / run 2 / ...), and the ratios
    of the totals to the floor's and the naive receiver's of the same run."""
    by = {v: [r for r in results if r.variant == v] for v in VARIANTS}

    def cells(values, fmt) -> str:
        return " / ".join(fmt(v) for v in values)

    def ratio(v: str, base: str) -> str:
        if not by[base]:
            return "-"
        quotients = [a.total_us / b.total_us for a, b in zip(by[v], by[base], strict=True)]
        return cells(quotients, lambda q: f"{q:.2f}x")

    rows = []
    for v in VARIANTS:
        if not by[v]:
            continue
        rs = by[v]
        rows.append(
            [
                LABELS[v],
                cells([r.rate for r in rs], lambda x: f"{x:,.0f}"),
                cells([r.server_us for r in rs], lambda x: f"{x:,.0f} µs"),
                cells([r.pg_us for r in rs], lambda x: f"{x:,.0f} µs"),
                cells([r.total_us for r in rs], lambda x: f"{x:,.0f} µs"),
                ratio(v, "empty"),
                ratio(v, "naive"),
                cells([r.p99_ms for r in rs], lambda x: f"{x:.0f} ms"),
            ]
        )
    header = [
        "receiver",
        "webhooks/s",
        "server CPU/webhook",
        "PostgreSQL CPU/webhook",
        "total",
        "total / empty",
        "total / naive",
        "p99",
    ]
    return format_table(header, rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.serve_cpu", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--smoke", action="store_true", help="2 s loads, one run, Python generator")
    parser.add_argument("--runs", type=int, default=2, help="runs of the three servers (2)")
    parser.add_argument("--seconds", type=float, default=10.0, help="each load (10 s)")
    parser.add_argument(
        "--only", choices=VARIANTS, action="append", help="measure only these (repeatable)"
    )
    parser.add_argument("--json", type=Path, help="write the raw results here")
    args = parser.parse_args(argv)
    if args.smoke:
        args.runs, args.seconds = 1, 2.0
    if not 1 <= args.runs <= 20:
        parser.error(f"--runs must be between 1 and 20, not {args.runs}")
    if not 1 <= args.seconds <= 600:
        parser.error(f"--seconds must be between 1 and 600, not {args.seconds:g}")
    use_wrk = not args.smoke and shutil.which("wrk") is not None
    if not args.smoke and not use_wrk:
        say("serve_cpu: wrk is not installed (apt-get install wrk): using the Python generator")
    variants = [v for v in VARIANTS if not args.only or v in args.only]

    from .runner import _open_server

    server, data_dir = _open_server(args)
    results: list[Result] = []
    try:
        template = server.create("cpu_template")
        migrate_lib.run(server.url(template), echo=lambda _: None)
        for run in range(args.runs):
            for variant in variants:
                url = server.url(server.create(f"cpu_{variant}", template))
                result = measure(url, variant, run, args.seconds, use_wrk)
                results.append(result)
                say(
                    f"serve_cpu run {run + 1}/{args.runs}: {variant}: {result.rate:,.0f}/s, "
                    f"server {result.server_us:,.0f} µs + PostgreSQL {result.pg_us:,.0f} µs "
                    f"per webhook ({result.tool})"
                )
    finally:
        server.drop_all()
        if data_dir is not None:
            from convdb import embedded

            embedded.stop(data_dir)
    print(
        f"64 connections, {args.seconds:g} s per load, {results[0].tool if results else '-'}, "
        f"{os.cpu_count()} cores shared by the load generator, the server and PostgreSQL; "
        "runs shown as run 1 / run 2 / ..."
    )
    print(report(results))
    medians = {
        v: statistics.median(r.total_us for r in results if r.variant == v)
        for v in variants
        if any(r.variant == v for r in results)
    }
    print(
        "median total CPU per webhook: " + ", ".join(f"{v} {t:,.0f} µs" for v, t in medians.items())
    )
    if args.json:
        args.json.write_text(
            json.dumps([r.__dict__ for r in results], indent=1, ensure_ascii=False) + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
