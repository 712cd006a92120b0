"""A/B of the receiver: this checkout's ``convdb serve`` against another checkout's, interleaved.

::

    python -m bench.receiver_ab OTHER_CHECKOUT [--rounds 3] [--seconds 10]

Measures what a change to the receiver costs, on one machine, in one run:
each round starts the two receivers one after the other (the order
alternates between rounds, so drift in the machine's load hits both sides),
each on a fresh migrated database of ``DATABASE_URL``'s server, and loads
them with

- the Standard Webhooks request of ``make bench`` at 64 connections (``wrk``
  when installed, else the Python generator): webhooks/s and p99 (group
  commit);
- one provider-shaped request per adapter (Twilio, SendGrid, Mailgun,
  Postmark: :mod:`convdb.serve.providers.samples`) at 64 connections, with
  the Python generator: webhooks/s;
- for each load, the receiver process's CPU time per request (user + system,
  from ``/proc``): what a change costs, much less moved by whatever else
  runs on the machine than the rates are.

``OTHER_CHECKOUT`` is a directory holding another version of convdb (a git
worktree of ``main``, say); its receiver runs with ``PYTHONPATH`` set to it.
Prints the median of each figure per side and this side's over the other's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from convdb import migrate as migrate_lib
from convdb.db import resolve_url
from convdb.serve.providers import samples
from convdb.serve.server import free_port, serve_command
from convdb.serve.standard import generate_secret

from . import loadgen
from .provider_figures import ADAPTERS, SECRETS, _endpoints, _raw, _wait
from .runner import Server
from .serve_figures import _endpoint

REPO = Path(__file__).resolve().parent.parent


def _serve(source: Path, url: str, env: dict) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen(
        serve_command(port),
        cwd=source,
        env={**os.environ, **env, "DATABASE_URL": url, "PYTHONPATH": str(source)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait(port, proc)
    return proc, port


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)


def _per_request(pid: int, cpu_before: float, load: loadgen.Load, seconds: float) -> float:
    """The receiver's CPU microseconds per request answered during ``load``."""
    return (loadgen.cpu_seconds(pid) - cpu_before) / max(load.rate * seconds, 1) * 1e6


def one_side(server: Server, template: str, source: Path, seconds: float, tag: str) -> dict:
    """Every figure of one receiver, each on a database of its own."""
    figures: dict[str, float] = {}
    use_wrk = shutil.which("wrk") is not None
    url = server.url(server.create("ab", template))
    secret = generate_secret()
    path = _endpoint(url)
    proc, port = _serve(source, url, {"CONVDB_BENCH_SECRET": secret})
    try:
        loadgen.latencies(port, loadgen.presigned(path, secret, 100, f"w{tag}", port), 4)
        requests = loadgen.presigned(path, secret, int(seconds * 12_000), f"l{tag}", port)
        cpu = loadgen.cpu_seconds(proc.pid)
        load = (loadgen.wrk_load if use_wrk else loadgen.python_load)(port, requests, 64, seconds)
        if load.errors:
            raise RuntimeError(f"{source}: {load.errors} requests not answered 200")
        figures["standard /s"], figures["standard p99 ms"] = load.rate, load.p99_ms
        figures["standard CPU us/req"] = _per_request(proc.pid, cpu, load, seconds)
    finally:
        _stop(proc)
    url = server.url(server.create("ab_providers", template))
    paths = _endpoints(url)
    with tempfile.TemporaryDirectory() as store:
        env = {f"CONVDB_BENCH_{a.upper()}": SECRETS[a] for a in ADAPTERS}
        env["CONVDB_ATTACHMENT_DIR"] = store
        proc, port = _serve(source, url, env)
        try:
            base = f"http://127.0.0.1:{port}"
            for number, adapter in enumerate(ADAPTERS):
                first = number * 10**6
                requests = [
                    _raw(
                        paths[adapter],
                        port,
                        *samples.request(
                            adapter, base + paths[adapter], SECRETS[adapter], first + i
                        ),
                    )
                    for i in range(int(seconds * 4_000))
                ]
                loadgen.latencies(port, requests[:50], 4)
                cpu = loadgen.cpu_seconds(proc.pid)
                load = loadgen.python_load(port, requests[50:], 64, seconds)
                if load.errors:
                    raise RuntimeError(f"{source} {adapter}: {load.errors} not answered 200")
                figures[f"{adapter} /s"] = load.rate
                figures[f"{adapter} CPU us/req"] = _per_request(proc.pid, cpu, load, seconds)
        finally:
            _stop(proc)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.receiver_ab", description=__doc__)
    parser.add_argument("other", type=Path, help="the other checkout (the baseline)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    server = Server(resolve_url())
    sides = {"baseline": args.other.resolve(), "this": REPO}
    results: dict[str, list[dict]] = {name: [] for name in sides}
    try:
        template = server.create("ab_template")
        migrate_lib.run(server.url(template), echo=lambda _: None)
        for round_ in range(args.rounds):
            order = list(sides) if round_ % 2 == 0 else list(reversed(sides))
            for name in order:
                figures = one_side(server, template, sides[name], args.seconds, f"{name}{round_}")
                results[name].append(figures)
                shown = ", ".join(f"{k} {v:,.1f}" for k, v in figures.items())
                print(f"round {round_ + 1} {name}: {shown}", flush=True)
    finally:
        server.drop_all()
    print(f"{'figure':<22} {'baseline':>10} {'this':>10} {'this/baseline':>14}")
    for key in results["this"][0]:
        base = statistics.median(r[key] for r in results["baseline"])
        this = statistics.median(r[key] for r in results["this"])
        print(f"{key:<22} {base:>10,.1f} {this:>10,.1f} {this / base:>14.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
