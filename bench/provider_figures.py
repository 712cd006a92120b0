"""The provider adapters' figures: webhooks/s per adapter, and memory for a 25 MB attachment.

- Webhooks/s at 64 connections for one provider-shaped request per adapter
  (:mod:`convdb.serve.providers.samples`: a signed Twilio MMS, a SendGrid
  email in ISO-8859-1, a signed Mailgun email, a Postmark email with a small
  attachment), every request a new delivery, on one ``convdb serve``.
- Peak RSS (``VmHWM``) of a receiver process that takes one SendGrid email
  with a 25 MB attachment: the shipped adapter, which streams the multipart
  body into the attachment store, beside the same adapter fed the whole body
  at once (``python -m bench.provider_figures --serve buffered``).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from convdb import db as convdb_db
from convdb.serve import endpoints
from convdb.serve.providers import samples
from convdb.serve.server import free_port, serve_command

from . import loadgen
from .report import Figure, say

REPO = Path(__file__).resolve().parent.parent
ADAPTERS = ("twilio", "sendgrid", "mailgun", "postmark")
SECRETS = {
    "twilio": "bench-twilio-auth-token",
    "sendgrid": "parse:bench-password",
    "mailgun": "key-bench-signing-key",
    "postmark": "postmark:bench-password",
}
ATTACHMENT_MB = 25


def _wait(port: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the receiver exited at start")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the receiver did not start")


def _start(command: list[str], url: str, port: int, env: dict) -> subprocess.Popen:
    proc = subprocess.Popen(
        command,
        cwd=REPO,
        env={**os.environ, **env, "DATABASE_URL": url},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait(port, proc)
    return proc


def _endpoints(url: str) -> dict[str, str]:
    database = convdb_db.open_database(url)
    try:
        return {
            adapter: endpoints.add(
                database,
                "bench",
                f"bench-{adapter}",
                kind="sms" if adapter == "twilio" else "email",
                adapter=adapter,
                secret_ref=f"env:CONVDB_BENCH_{adapter.upper()}",
                known_adapters=ADAPTERS,
            ).path
            for adapter in ADAPTERS
        }
    finally:
        database.close()


def _raw(path: str, port: int, body: bytes, headers: dict) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def provider_figures(server, template: str, sizes, notes: list[str], store: Path) -> list[Figure]:
    rates = {
        a: Figure(f"webhooks/s, 64 connections, {a} request", "/s", info=True) for a in ADAPTERS
    }
    count = int(sizes.serve_seconds * 4_000)
    env = {f"CONVDB_BENCH_{a.upper()}": SECRETS[a] for a in ADAPTERS}
    env["CONVDB_ATTACHMENT_DIR"] = str(store)
    for run in range(sizes.runs):
        url = server.url(server.create("providers", template))
        paths = _endpoints(url)
        port = free_port()
        proc = _start(serve_command(port), url, port, env)
        try:
            for adapter in ADAPTERS:
                base = f"http://127.0.0.1:{port}"
                requests = [
                    _raw(
                        paths[adapter],
                        port,
                        *samples.request(
                            adapter, base + paths[adapter], SECRETS[adapter], run * 10**7 + i
                        ),
                    )
                    for i in range(count)
                ]
                loadgen.latencies(port, requests[:50], 4)  # warm-up, and a check of the answers
                load = loadgen.python_load(port, requests[50:], 64, sizes.serve_seconds)
                if load.errors:
                    raise RuntimeError(f"{adapter}: {load.errors} requests not answered 200")
                rates[adapter].runs.append(load.rate)
                say(
                    f"bench: {adapter}: {load.rate:,.0f}/s at 64 connections, p99 "
                    f"{load.p99_ms:.1f} ms (python generator, CPU {load.client_cpu:.0%})"
                )
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    notes.append(
        "Provider rows: the Python load generator shares the cores with the server; "
        "each request is a new delivery."
    )
    return [*rates.values(), *rss_figures(server, template, store, sizes)]


def rss_figures(server, template: str, store: Path, sizes) -> list[Figure]:
    mb = 1 if sizes.smoke_serve else ATTACHMENT_MB
    figures = {
        mode: Figure(f"receiver peak RSS, one {mb} MB attachment, {mode}", "MB", info=True)
        for mode in ("streamed", "read whole")
    }
    attachment = os.urandom(mb * 1024 * 1024)
    body, headers = samples.sendgrid_request(SECRETS["sendgrid"], 1, attachment=attachment)
    for mode, figure in figures.items():
        url = server.url(server.create("rss", template))
        path = _endpoints(url)["sendgrid"]
        port = free_port()
        command = [sys.executable, "-m", "bench.provider_figures", "--serve", mode, "--port"]
        env = {
            "CONVDB_BENCH_SENDGRID": SECRETS["sendgrid"],
            "CONVDB_ATTACHMENT_DIR": str(store),
        }
        proc = _start([*command, str(port)], url, port, env)
        try:
            before = loadgen.rss_mb(proc.pid)
            answer = httpx.post(
                f"http://127.0.0.1:{port}{path}", content=body, headers=headers, timeout=120
            )
            if answer.status_code != 200:
                raise RuntimeError(f"{mode}: the upload got {answer.status_code}: {answer.text}")
            figure.runs.append(_peak_mb(proc.pid))
            say(
                f"bench: {mb} MB attachment, {mode}: RSS {before:.0f} MB before, "
                f"peak {figure.runs[-1]:.0f} MB"
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    return list(figures.values())


def _peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc")


def _serve(mode: str, port: int) -> None:
    """A receiver whose SendGrid adapter streams, or reads the whole body first."""
    import uvicorn

    from convdb.serve.app import create_app
    from convdb.serve.providers.sendgrid import SendGrid

    class ReadWhole(SendGrid):
        async def receive(self, request):
            body = await request.body()

            async def whole():
                yield body

            request.stream = whole  # the parser then gets the body in one piece
            return await super().receive(request)

    adapter = SendGrid() if mode == "streamed" else ReadWhole()
    uvicorn.run(create_app(adapters={"sendgrid": adapter}), port=port, log_level="warning")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", choices=["streamed", "read whole"], required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    _serve(args.serve, args.port)
    sys.exit(0)
