"""The receiver's figures: one webhook's latency at 1 and 4 clients, webhooks/s at 64
connections against the naive receiver (one INSERT and one commit per request, same
app), and the server's memory through a sustained load.

Every request is a new delivery, signed as a Standard Webhooks sender signs it,
answered only after its commit (``synchronous_commit`` on). 64-connection loads
use ``wrk`` when it is installed (``make bench`` installs it where it can) and
the Python generator otherwise (always in ``--smoke``); the notes say which.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from convdb import db as convdb_db
from convdb.serve import endpoints
from convdb.serve.server import free_port, serve_command
from convdb.serve.standard import generate_secret

from . import loadgen
from .report import Figure, percentile, say

REPO = Path(__file__).resolve().parent.parent


def _start(url: str, variant: str, secret: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    if variant in ("naive", "empty"):  # bench.serve_naive, bench.serve_empty
        command = [sys.executable, "-m", f"bench.serve_{variant}", "--port", str(port)]
    else:
        command = serve_command(port)
    env = {**os.environ, "DATABASE_URL": url, "CONVDB_BENCH_SECRET": secret}
    proc = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"the {variant} receiver did not start")


def _endpoint(url: str) -> str:
    database = convdb_db.open_database(url)
    try:
        return endpoints.add(
            database,
            "bench",
            "inhouse",
            kind="sms",
            adapter="standard",
            secret_ref="env:CONVDB_BENCH_SECRET",
            known_adapters=["standard"],
        ).path
    finally:
        database.close()


def _signer(path: str, secret: str, run: int, port: int):
    def sign(count: int, tag: str) -> list[bytes]:
        return loadgen.presigned(path, secret, count, f"{tag}{run}", port)

    return sign


def _load(port, requests, connections, seconds, use_wrk) -> loadgen.Load:
    if use_wrk:
        return loadgen.wrk_load(port, requests, connections, seconds)
    return loadgen.python_load(port, requests, connections, seconds)


def serve_figures(server, template: str, sizes, notes: list[str]) -> list[Figure]:
    use_wrk = not sizes.smoke_serve and shutil.which("wrk") is not None
    if not sizes.smoke_serve and not use_wrk:
        notes.append(
            "wrk is not installed (apt-get install wrk): the 64-connection figures "
            "come from the Python generator, which shares the cores with the server."
        )
    p50 = Figure("webhook, 1 client, p50", "ms", at_most=3.0, target_text="≤ 3 ms")
    p99 = Figure("webhook, 1 client, p99", "ms", info=True)
    p50_4 = Figure("webhook, 4 clients, p50", "ms", at_most=3.0, target_text="≤ 3 ms")
    p99_4 = Figure("webhook, 4 clients, p99", "ms", info=True)
    rate = Figure("webhooks/s, 64 connections, group commit", "/s", info=True)
    naive = Figure("webhooks/s, 64 connections, naive receiver", "/s", info=True)
    ratio = Figure("group commit / naive, 64 connections", "x", at_least=2.0, target_text="≥ 2x")
    tail = Figure(
        "webhook p99, 64 connections, group commit", "ms", at_most=25.0, target_text="≤ 25 ms"
    )
    rss = Figure(
        f"server RSS, {sizes.serve_rss_seconds:g} s at 64 connections, peak",
        "MB",
        at_most=150,
        target_text="≤ 150 MB",
    )
    growth = Figure(
        "server RSS growth, second half of that run", "MB", at_most=10, target_text="≤ 10 MB (flat)"
    )
    count = sizes.serve_latency
    burst = int(sizes.serve_seconds * 12_000)  # more than either receiver answers
    for run in range(sizes.runs):
        for variant in ("group", "naive"):
            url = server.url(server.create(f"serve_{variant}", template))
            secret = generate_secret()
            path = _endpoint(url)
            proc, port = _start(url, variant, secret)
            try:
                sign = _signer(path, secret, run, port)
                loadgen.latencies(port, sign(100, "warm"), 4)
                if variant == "group":
                    one = loadgen.latencies(port, sign(count, "c1_"), 1)
                    four = loadgen.latencies(port, sign(count, "c4_"), 4)
                    p50.runs.append(percentile(one, 50))
                    p99.runs.append(percentile(one, 99))
                    p50_4.runs.append(percentile(four, 50))
                    p99_4.runs.append(percentile(four, 99))
                load = _load(port, sign(burst, "c64_"), 64, sizes.serve_seconds, use_wrk)
                if load.errors:
                    raise RuntimeError(f"{variant}: {load.errors} requests not answered 200")
                (rate if variant == "group" else naive).runs.append(load.rate)
                say(
                    f"bench: serve {variant}: {load.rate:,.0f}/s at 64 connections, "
                    f"p50 {load.p50_ms:.1f} ms, p99 {load.p99_ms:.1f} ms ({load.tool}"
                    + (f", generator CPU {load.client_cpu:.0%}" if load.client_cpu else "")
                    + ")"
                )
                if variant == "group":
                    tail.runs.append(load.p99_ms)
                    if run == 0:
                        peak, half = _rss_run(proc.pid, port, sign, sizes, use_wrk)
                        rss.runs.append(peak)
                        growth.runs.append(half)
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(60)
        ratio.runs.append(rate.runs[-1] / naive.runs[-1])
    return [p50, p99, p50_4, p99_4, rate, naive, ratio, tail, rss, growth]


def _rss_run(pid, port, sign, sizes, use_wrk) -> tuple[float, float]:
    """Peak RSS, and its growth over the second half, of a sustained 64-connection load."""
    import threading

    samples: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(loadgen.rss_mb(pid))
            stop.wait(1.0)

    sampler = threading.Thread(target=sample)
    requests = sign(min(int(sizes.serve_rss_seconds * 6_000), 400_000), "rss_")
    sampler.start()
    try:
        _load(port, requests, 64, sizes.serve_rss_seconds, use_wrk)
    finally:
        stop.set()
        sampler.join()
    half = samples[len(samples) // 2 :]
    say(
        f"bench: serve RSS over {sizes.serve_rss_seconds:g} s: "
        + ", ".join(f"{s:.0f}" for s in samples[:: max(1, len(samples) // 12)])
        + " MB"
    )
    return max(samples), (max(half) - half[0]) if half else 0.0
