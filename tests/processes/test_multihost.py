"""Several hosts in DATABASE_URL (issue 21, item 1) on one server: every command, the receiver,
the worker and ``pw_migrate`` skip a host that is down, reach the one that answers, and never
print the password. Standbys and failovers are in ``test_replication.py``."""

from __future__ import annotations

import json
import re
import time
from urllib.parse import urlsplit, urlunsplit

import pytest

from convdb.testing import query, scalar

from ..serve_support import Sender, ServeProcess
from ..support import PIECE, example, run_cli

pytestmark = pytest.mark.slow

PASSWORD = f"{PIECE}-multi-host-pw"


def multi_host(url: str, first: str = "127.0.0.1:1") -> str:
    """``url`` with a password, behind a first host that refuses connections."""
    parts = urlsplit(url)
    if not parts.hostname:
        pytest.skip("the test server is reached over a socket: no TCP hosts to list")
    netloc = f"{parts.username}:{PASSWORD}@{first},{parts.hostname}:{parts.port or 5432}"
    return urlunsplit(parts._replace(netloc=netloc))


def cli(url: str, *args: str, stdin: str | None = None, env: dict | None = None):
    import subprocess

    from ..support import BIN, REPO

    result = subprocess.run(
        [str(BIN / args[0]), *args[1:]],
        cwd=REPO,
        env={**_env(), "DATABASE_URL": url, **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert PIECE not in output, (args, output)
    assert result.returncode == 0, (args, output)
    return result


def pending(stats: str) -> int:
    """The pending count of ``convdb queue stats``' ``(all)`` row."""
    return int(re.search(r"^\(all\)\s+(\d+)", stats, re.M).group(1))


def _env() -> dict:
    import os

    return {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CONVDB_READ_URL")}


def test_every_command_on_a_multi_host_url_with_its_first_host_down(empty_db_url):
    url = multi_host(empty_db_url)
    shown = cli(url, "pw_migrate", "migrate")
    assert "migrat" in (shown.stdout + shown.stderr).lower()
    cli(url, "convdb", "migrate")
    assert "pending" not in cli(url, "convdb", "status").stdout.split("core", 1)[1][:20]
    cli(url, "convdb", "rollback")
    cli(url, "convdb", "migrate")
    cli(url, "convdb", "plugins")
    line = json.dumps(example(message_id="multi-1"))
    assert "stored 1 event" in cli(url, "convdb", "enqueue", "message.received", stdin=line).stdout
    assert pending(cli(url, "convdb", "queue", "stats").stdout) == 1
    cli(url, "convdb", "queue-worker", "--burst", "-q")
    assert scalar(empty_db_url, "SELECT count(*) FROM messages") == 1
    cli(url, "convdb", "queue", "retry-dead")
    cli(url, "convdb", "queue", "purge", "--done-older-than", "1d")
    added = cli(
        url,
        "convdb",
        "providers",
        "add",
        "acme",
        "inhouse",
        "--kind",
        "email",
        "--adapter",
        "standard",
        "--secret-ref",
        "env:CONVDB_TEST_SECRET",
    )
    path = added.stdout.strip().splitlines()[-1]
    assert "acme" in cli(url, "convdb", "providers", "list").stdout

    from convdb.serve.standard import generate_secret

    secret = generate_secret()
    server = ServeProcess(url, env={"CONVDB_TEST_SECRET": secret})
    with server, server.client() as client:
        sender = Sender(path, secret)
        assert sender.post(client, example(message_id="multi-2")).status_code == 200
        assert client.get("/healthz").json()["status"] == "ok"
        assert server.stop() == 0
    assert PIECE not in server.output
    assert "127.0.0.1:1" in server.output  # the URL as shown: every host, password masked
    cli(url, "convdb", "queue-worker", "--burst", "-q")
    assert scalar(empty_db_url, "SELECT count(*) FROM messages") == 2
    cli(url, "convdb", "providers", "remove", "acme", "inhouse")


def test_a_one_shot_command_with_no_host_up_fails_at_once_naming_each_host(empty_db_url):
    name = urlsplit(empty_db_url).path
    url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:1,127.0.0.1:2,127.0.0.1:3{name}"
    started = time.monotonic()
    result = run_cli("convdb", "status", env={"DATABASE_URL": url}, timeout=30)
    assert time.monotonic() - started < 10
    assert result.returncode == 1
    assert result.stderr.startswith("Error: cannot connect to postgresql://")
    assert PIECE not in result.stdout + result.stderr
    for port in ("1", "2", "3"):
        assert f"port {port} failed" in result.stderr


def test_a_read_url_on_a_primary_is_accepted_with_a_note(db_url, fresh_db_url):
    """``queue stats`` reads CONVDB_READ_URL (here a database of its own, a primary), and
    says it is a primary; commands that write never read it."""
    from convdb import migrate as migrate_lib

    migrate_lib.run(fresh_db_url, echo=lambda _: None)
    query(fresh_db_url, "INSERT INTO inbound_events (event_type, payload) VALUES ('x', '{}')")
    read_url = multi_host(fresh_db_url)
    env = {"CONVDB_READ_URL": read_url}
    stats = cli(db_url, "convdb", "queue", "stats", env=env)
    assert pending(stats.stdout) == 1  # read there, not on DATABASE_URL
    assert "note: CONVDB_READ_URL" in stats.stderr and "reached a primary" in stats.stderr
    explicit = cli(db_url, "convdb", "queue", "stats", "--database-url", db_url, env=env)
    assert pending(explicit.stdout) == 0  # a URL on the command line wins
    line = json.dumps(example(message_id="written-on-the-primary"))
    cli(db_url, "convdb", "enqueue", "message.received", stdin=line, env=env)
    cli(db_url, "convdb", "queue-worker", "--burst", "-q", env=env)
    assert scalar(db_url, "SELECT count(*) FROM messages") == 1
    assert scalar(fresh_db_url, "SELECT count(*) FROM messages") == 0
