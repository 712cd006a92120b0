"""Helpers for the operator console's tests (no tests in here): an app on a test
database, logins, a dataset with hostile values, and a real ``convdb console``."""

from __future__ import annotations

import os
import re
import subprocess
import threading

import httpx
from starlette.testclient import TestClient

from convdb.console.app import create_app
from convdb.console.settings import ConsoleSettings
from convdb.queue.worker import WorkerConfig
from convdb.queue.worker import run as run_worker

from .support import BIN, REPO, example, fill, wait_until

PASSWORD = "operator-password-1"
READONLY_PASSWORD = "reader-password-22"
PASSWORD_VAR = "CONSOLE_TEST_PASSWORD"
READONLY_VAR = "CONSOLE_TEST_READONLY"

# What a hostile sender may put in a message: each must be shown as text.
XSS = ["<img src=x onerror=alert(1)>", "</script><script>alert(2)</script>"]

TOKEN = re.compile(r'name="(csrf|login_token)" value="([^"]+)"')


def settings(**changes) -> ConsoleSettings:
    values = {
        "password_ref": f"env:{PASSWORD_VAR}",
        "readonly_password_ref": f"env:{READONLY_VAR}",
    }
    values.update(changes)
    return ConsoleSettings(**values)


def client(url: str, *, base_url: str = "http://console.test", **changes) -> TestClient:
    """A TestClient on the console app over the database at ``url`` (the env passwords set)."""
    os.environ[PASSWORD_VAR] = PASSWORD
    os.environ[READONLY_VAR] = READONLY_PASSWORD
    app = create_app(settings(**changes), read_url=url, write_url=url)
    return TestClient(app, base_url=base_url, follow_redirects=False)


def token(html: str, name: str = "csrf") -> str:
    for found, value in TOKEN.findall(html):
        if found == name:
            return value
    raise AssertionError(f"no {name} field in the page")


def login(http: TestClient, password: str = PASSWORD) -> httpx.Response:
    page = http.get("/login")
    return http.post(
        "/login", data={"password": password, "login_token": token(page.text, "login_token")}
    )


def hostile_messages(url: str) -> None:
    """A conversation whose subject, names, body and file names are the XSS payloads."""
    payloads = []
    for i, text in enumerate(XSS):
        payloads.append(
            example(
                message_id=f"xss-{i}",
                subject=text,
                body=f"body {text}",
                sender={"address": f"x{i}@example.com", "name": text},
                conversation_key="hostile",
                customer={"key": "acme", "name": text},
                attachments=[
                    {
                        "url": f"https://files.example/f{i}.png",
                        "content_type": "image/png",
                        "size": 1234,
                        "filename": f"{text}.png",
                    }
                ],
            )
        )
    fill(url, payloads)
    drain(url)


def drain(url: str) -> None:
    run_worker(url, config=WorkerConfig(burst=True, progress_interval=0))


RUNNING = re.compile(r"Uvicorn running on http://[^:]+:(\d+)")


class ConsoleProcess:
    """``convdb console --port 0`` on ``url``; the port is read from its log."""

    def __init__(self, url: str, env: dict | None = None, *, wait: bool = True) -> None:
        full_env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        full_env.update({PASSWORD_VAR: PASSWORD, READONLY_VAR: READONLY_PASSWORD})
        full_env["CONVDB_CONSOLE_PASSWORD_REF"] = f"env:{PASSWORD_VAR}"
        full_env["CONVDB_CONSOLE_READONLY_PASSWORD_REF"] = f"env:{READONLY_VAR}"
        full_env.update(env or {})
        full_env["DATABASE_URL"] = url
        self.proc = subprocess.Popen(
            [str(BIN / "convdb"), "console", "--port", "0"],
            cwd=REPO,
            env={k: v for k, v in full_env.items() if v is not None},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if wait:
            port = wait_until(self._port, timeout=30)
            self.base_url = f"http://127.0.0.1:{port}"

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def _port(self) -> str | None:
        if self.proc.poll() is not None:
            raise AssertionError("convdb console exited:\n" + self.output)
        for line in self.lines:
            match = RUNNING.search(line)
            if match and match.group(1) != "0":
                return match.group(1)
        return None

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def stop(self, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code
