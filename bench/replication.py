"""The receiver with and without a synchronous standby, back to back: webhooks/s at 64 connections.

::

    .venv/bin/python -m bench.replication [--runs 3] [--seconds 10] [--smoke]

Starts a primary and a streaming standby on this machine from PostgreSQL's
own tools (:mod:`tests.pgcluster`: the server binaries are found, or
installed where that is possible), ``fsync`` on, both on the same disk and
cores as everything else. Each run measures, in turn, the group-commit
receiver (``convdb serve``) and the naive receiver (one INSERT and one
commit per request, :mod:`bench.serve_naive`), each with
``synchronous_standby_names = '*'`` (every commit waits until the standby
has flushed it: ``synchronous_commit = on``) and with it empty (the standby
streams asynchronously), in an order that alternates from run to run. Every
request is a new signed delivery, answered after its commit.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import tempfile
from pathlib import Path

from convdb import migrate as migrate_lib
from convdb.serve.standard import generate_secret

from . import loadgen
from .report import Figure, say
from .serve_figures import _endpoint, _load, _signer, _start

VARIANTS = ("group", "naive")


def replication_figures(runs: int, seconds: float, smoke: bool, notes: list[str]) -> list[Figure]:
    """The figures; ``n/a`` with the reason where no PostgreSQL binaries can be had."""
    from tests.pgcluster import Cluster, Unavailable, server_version

    names = {
        ("group", True): "webhooks/s, 64 connections, group commit, synchronous standby",
        ("group", False): "webhooks/s, 64 connections, group commit, asynchronous standby",
        ("naive", True): "webhooks/s, 64 connections, naive receiver, synchronous standby",
        ("naive", False): "webhooks/s, 64 connections, naive receiver, asynchronous standby",
    }
    figures = {key: Figure(name, "/s", info=True) for key, name in names.items()}
    cost = Figure("group commit, synchronous / asynchronous standby", "x", info=True)
    advantage = Figure(
        "group commit / naive, synchronous standby", "x", at_least=2.0, target_text="≥ 2x"
    )
    result = [*figures.values(), cost, advantage]
    folder = Path(tempfile.mkdtemp(prefix="convdb-bench-cluster-"))
    try:
        cluster = Cluster.create(folder, fsync=True)
    except Unavailable as exc:
        shutil.rmtree(folder, ignore_errors=True)
        for figure in result:
            figure.missing = str(exc)[:80]
        return result
    try:
        cluster.add_standby()
        primary = cluster.primary
        notes.append(
            f"Replication figures: a primary and a streaming standby of PostgreSQL "
            f"{server_version(cluster.bindir)} on this machine (fsync on, same disk and cores)."
        )
        primary.sql("CREATE DATABASE bench_template")
        migrate_lib.run(primary.url("bench_template"), echo=lambda _: None)
        use_wrk = not smoke and shutil.which("wrk") is not None
        burst = int(seconds * 12_000)
        for run in range(runs):
            order = [(v, s) for v in VARIANTS for s in (True, False)]
            if run % 2:
                order.reverse()
            for variant, sync in order:
                cluster.make_synchronous(sync)
                name = f"bench_{variant}_{'sync' if sync else 'async'}_{run}"
                primary.sql(f'CREATE DATABASE "{name}" TEMPLATE bench_template')
                url = primary.url(name)
                secret = generate_secret()
                path = _endpoint(url)
                proc, port = _start(url, variant, secret)
                try:
                    sign = _signer(path, secret, run, port)
                    loadgen.latencies(port, sign(100, "warm"), 4)
                    load = _load(port, sign(burst, "c64_"), 64, seconds, use_wrk)
                finally:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(60)
                if load.errors:
                    raise RuntimeError(f"{variant}: {load.errors} requests not answered 200")
                figures[(variant, sync)].runs.append(load.rate)
                say(
                    f"bench: replication, {variant}, {'sync' if sync else 'async'} standby: "
                    f"{load.rate:,.0f}/s, p50 {load.p50_ms:.1f} ms, p99 {load.p99_ms:.1f} ms "
                    f"({load.tool})"
                )
                primary.sql(f'DROP DATABASE "{name}"')
            cost.runs.append(figures[("group", True)].runs[-1] / figures[("group", False)].runs[-1])
            advantage.runs.append(
                figures[("group", True)].runs[-1] / figures[("naive", True)].runs[-1]
            )
    finally:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.replication", description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0, help="each 64-connection load")
    parser.add_argument("--smoke", action="store_true", help="1 run of 2 s, Python generator")
    args = parser.parse_args(argv)
    runs, seconds = (1, 2.0) if args.smoke else (args.runs, args.seconds)
    notes: list[str] = []
    figures = replication_figures(runs, seconds, args.smoke, notes)
    for figure in figures:
        print(f"{figure.name}: {figure.value_text()}")
        if figure.runs and len(figure.runs) > 1:
            print(f"    runs: {', '.join(f'{r:,.1f}' for r in figure.runs)}")
    for note in notes:
        print(note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["replication_figures"]
