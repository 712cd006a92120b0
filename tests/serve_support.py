"""Helpers for the receiver's tests (no tests in here): a real ``convdb serve`` process,
endpoints, and requests signed the way Standard Webhooks senders sign them."""

from __future__ import annotations

import json
import re
import signal
import time
import uuid

import httpx

from convdb import db as convdb_db
from convdb.serve import endpoints
from convdb.serve.server import free_port
from convdb.serve.standard import generate_secret, sign

from .support import ConvdbProcess, wait_until

RUNNING = re.compile(r"Uvicorn running on http://[^:]+:(\d+)")


class ServeProcess(ConvdbProcess):
    """``convdb serve --port 0 ARGS`` on ``url``; the port is read from its log."""

    def __init__(self, url: str, *args: str, env: dict | None = None) -> None:
        # Several workers share a socket bound by uvicorn's supervisor, which
        # logs the port asked for: ask for a free one then.
        port = str(free_port()) if "--workers" in args else "0"
        super().__init__(url, "serve", "--port", port, *args, env=env)
        try:
            port = wait_until(self._port, timeout=30)
        except AssertionError:
            self.kill()
            raise AssertionError("convdb serve did not start:\n" + self.output) from None
        self.base_url = f"http://127.0.0.1:{port}"

    def _port(self) -> str | None:
        if self.proc.poll() is not None:
            raise AssertionError("convdb serve exited:\n" + self.output)
        for line in self.lines:
            match = RUNNING.search(line)
            if match and match.group(1) != "0":
                return match.group(1)
        return None

    def healthy(self) -> bool:
        try:
            return httpx.get(self.base_url + "/healthz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=30, **kwargs)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.kill()


class Sender:
    """An in-house sender: one endpoint's path and secret, signs what it posts."""

    def __init__(self, path: str, secret: str) -> None:
        self.path = path
        self.secret = secret

    def request(
        self,
        data: dict,
        *,
        event_type: str = "message.received",
        msg_id: str | None = None,
        timestamp: int | None = None,
        secret: str | None = None,
        body: bytes | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        """The body and headers of a signed delivery."""
        if body is None:
            body = json.dumps({"type": event_type, "data": data}).encode()
        msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
        timestamp = int(time.time()) if timestamp is None else timestamp
        headers = sign(secret or self.secret, msg_id, timestamp, body)
        headers["content-type"] = "application/json"
        return body, headers

    def post(self, client: httpx.Client, data: dict, **kwargs) -> httpx.Response:
        body, headers = self.request(data, **kwargs)
        return client.post(self.path, content=body, headers=headers)


def add_endpoint(
    url: str,
    customer_key: str = "acme",
    provider_name: str = "inhouse",
    *,
    secret_ref: str = "env:CONVDB_TEST_SECRET",
    kind: str = "email",
    adapter: str = "standard",
) -> str:
    """Register an endpoint on ``url``; its path."""
    database = convdb_db.open_database(url)
    try:
        new = endpoints.add(
            database,
            customer_key,
            provider_name,
            kind=kind,
            adapter=adapter,
            secret_ref=secret_ref,
            customer_name="Acme, Inc.",
        )
    finally:
        database.close()
    return new.path


def add_adapter_endpoints(url: str, refs: dict[str, str]) -> dict[str, str]:
    """One endpoint of customer ``acme`` per adapter named in ``refs`` (adapter -> secret
    reference), each its own provider named after the adapter; ``{adapter: path}``."""
    return {
        adapter: add_endpoint(
            url,
            provider_name=adapter,
            kind="sms" if adapter == "twilio" else "email",
            adapter=adapter,
            secret_ref=ref,
        )
        for adapter, ref in refs.items()
    }


def serving(url: str, *args: str, env: dict | None = None) -> tuple[ServeProcess, Sender]:
    """An endpoint with a fresh secret in the server's environment, and the running server."""
    secret = generate_secret()
    path = add_endpoint(url)
    server = ServeProcess(url, *args, env={"CONVDB_TEST_SECRET": secret, **(env or {})})
    return server, Sender(path, secret)
