"""Helpers for convdb's own tests (no tests in here).

Where the checkout is, console scripts run as real processes, canonical
payloads, the SQL that recounts conversation counters from the rows, and the
core's first migration history as a source.
Database fixtures and ``query``/``scalar`` come from :mod:`convdb.testing`.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from convdb import migrate as migrate_lib
from convdb.migrate import CORE, Source
from convdb.testing import query

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

# The core's first history (001_core_tables ... 016_counters_by_caller), kept
# verbatim as a package: applied as the source "core", it builds a database
# "migrated with the old 15 modules" in the core's own history table.
HISTORY_0_1 = Source("core", "tests.fixtures.history_0_1", "migratehistory")
# The core's baseline (the modules that replace that history), and what follows it.
BASELINE = list(CORE.squashes())
AFTER_BASELINE = [name for name in CORE.modules() if name not in BASELINE]

# Conversation counters as stored, and as recounted from the rows
# (participant_count: distinct contacts).
ACTUAL = """
SELECT c.id,
       (SELECT max(sent_at) FROM messages m WHERE m.conversation_id = c.id),
       (SELECT count(*) FROM messages m WHERE m.conversation_id = c.id),
       (SELECT count(DISTINCT contact_id) FROM conversation_participants p
         WHERE p.conversation_id = c.id)
  FROM conversations c ORDER BY c.id
"""
STORED = """
SELECT id, last_message_at, message_count, participant_count FROM conversations ORDER BY id
"""


# Every row ingestion writes, without surrogate ids (they depend on the order
# of writes), counters included.
SNAPSHOT = {
    "customers": "SELECT key, name FROM customers",
    "providers": "SELECT c.key, p.kind, p.name FROM providers p JOIN customers c "
    "ON c.id = p.customer_id",
    "endpoints": "SELECT c.key, p.name, e.kind, e.address, e.normalized, e.hash "
    "FROM endpoint_mappings e JOIN customers c ON c.id = e.customer_id "
    "JOIN providers p ON p.id = e.provider_id",
    "contacts": "SELECT cu.key, c.display_name, coalesce(ea.lowered, pn.e164) FROM contacts c "
    "JOIN customers cu ON cu.id = c.customer_id "
    "LEFT JOIN contact_addresses ca ON ca.contact_id = c.id "
    "LEFT JOIN email_addresses ea ON ea.id = ca.email_address_id "
    "LEFT JOIN phone_numbers pn ON pn.id = ca.phone_number_id",
    "conversations": "SELECT cu.key, cv.key, cv.thread_key, cv.topic, cv.message_count, "
    "cv.participant_count, cv.last_message_at FROM conversations cv "
    "JOIN customers cu ON cu.id = cv.customer_id",
    "participants": "SELECT cu.key, coalesce(cv.key, cv.thread_key), cp.role, "
    "coalesce(ea.lowered, pn.e164) FROM conversation_participants cp "
    "JOIN conversations cv ON cv.id = cp.conversation_id "
    "JOIN customers cu ON cu.id = cv.customer_id "
    "JOIN contact_addresses ca ON ca.contact_id = cp.contact_id "
    "LEFT JOIN email_addresses ea ON ea.id = ca.email_address_id "
    "LEFT JOIN phone_numbers pn ON pn.id = ca.phone_number_id",
    "messages": "SELECT p.name, m.provider_message_id, coalesce(cv.key, cv.thread_key), "
    "m.direction, eb.normalized, xb.normalized, m.sent_at, m.received_at FROM messages m "
    "JOIN providers p ON p.id = m.provider_id JOIN conversations cv ON cv.id = m.conversation_id "
    "LEFT JOIN email_bodies eb ON eb.id = m.email_body_id "
    "LEFT JOIN xms_bodies xb ON xb.id = m.xms_body_id",
    "attachments": "SELECT m.provider_message_id, u.raw, u.normalized, a.content_type "
    "FROM message_attachments ma JOIN messages m ON m.id = ma.message_id "
    "JOIN attachments a ON a.id = ma.attachment_id JOIN attachment_urls u ON u.id = a.url_id",
    "email_bodies": "SELECT raw, hash, normalized FROM email_bodies",
    "xms_bodies": "SELECT raw, hash, normalized FROM xms_bodies",
    "email_addresses": "SELECT raw, hash, lowered FROM email_addresses",
    "phone_numbers": "SELECT raw, hash, e164 FROM phone_numbers",
    "attachment_urls": "SELECT raw, hash, normalized FROM attachment_urls",
}


def snapshot(rows) -> dict[str, list]:
    """:data:`SNAPSHOT`, each table sorted; ``rows(sql)`` runs a query and returns its rows."""
    return {name: sorted(rows(sql), key=repr) for name, sql in SNAPSHOT.items()}


def migrate_before(url: str, number: str, *, force: bool = False) -> None:
    """Migrate the core at ``url`` up to, not including, migration ``number`` ("023");
    ``force``: even when that drops stored data."""
    migrate_lib.run(url, echo=lambda _: None)
    later = [n for n in CORE.modules() if n >= number]
    migrate_lib.rollback(url, count=len(later), echo=lambda _: None, force=force)


def run_cli(
    *args: str,
    env: dict | None = None,
    cwd: Path = REPO,
    timeout: float = 120,
    check: bool = False,
    stdin: str | None = None,
) -> subprocess.CompletedProcess:
    """Run a console script of this environment (``convdb``, ``pw_migrate``) to its end."""
    full_env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    full_env.update(env or {})
    result = subprocess.run(
        [str(BIN / args[0]), *args[1:]],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{args} exited {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


def run_together(url: str, *commands: tuple[str, ...], timeout: float = 120) -> None:
    """Start console scripts (``("convdb", "migrate")``, ...) at once on ``url``; all exit 0."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["DATABASE_URL"] = url
    procs = [
        subprocess.Popen(
            [str(BIN / cmd[0]), *cmd[1:]],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for cmd in commands
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, f"{proc.args} exited {proc.returncode}: {out}\n{err}"


EXAMPLE = {
    "customer": {"key": "acme", "name": "Acme, Inc."},
    "provider": {"kind": "email", "name": "sendgrid"},
    "direction": "inbound",
    "message_id": "provider-msg-0001",
    "from": {"address": "Jane.Doe@Example.com", "name": "Jane Doe"},
    "to": [{"address": "support@acme.example"}],
    "subject": "Onboarding",
    "body": "Hello,   we need help\n",
    "sent_at": "2025-11-05T10:00:00+02:00",
    "received_at": "2025-11-05T08:00:05Z",
    "conversation_key": "thread-42",
    "attachments": [{"url": "https://files.example/a.png", "content_type": "image/png"}],
}


def example(**changes) -> dict:
    """The SPEC's example payload with top-level fields replaced (None removes one)."""
    payload = copy.deepcopy(EXAMPLE)
    for key, value in changes.items():
        key = "from" if key == "sender" else key
        if value is None:
            payload.pop(key, None)
        else:
            payload[key] = value
    return payload


def sms_events(n: int, *, customers: int = 10, contacts: int = 100, prefix: str = "m") -> list:
    """``n`` distinct canonical SMS payloads spread over customers and contacts."""
    payloads = []
    for i in range(n):
        c = i % customers
        payloads.append(
            {
                "customer": {"key": f"cust-{c}", "name": f"Customer {c}"},
                "provider": {"kind": "sms", "name": "twilio"},
                "direction": "inbound" if i % 3 else "outbound",
                "message_id": f"{prefix}-{i}",
                "from": {"address": f"+1415555{i % contacts:04d}"},
                "to": [{"address": f"+1212555{c:04d}"}],
                "body": f"message {i % 50}",
                "sent_at": "2025-11-05T10:00:00+02:00",
            }
        )
        if payloads[-1]["direction"] == "outbound":
            p = payloads[-1]
            p["from"], p["to"] = p["to"][0], [p["from"]]
    return payloads


def fill(url: str, payloads: list, event_type: str = "message.received", keys=None) -> None:
    """Enqueue ``payloads`` on the database at ``url`` (the API, one transaction), as
    they are: held to the limits only, so tests can store what the worker must refuse
    and events of types only their own worker's handlers know."""
    from convdb.db import open_database
    from convdb.queue import enqueue_many

    database = open_database(url)
    try:
        enqueue_many(event_type, payloads, idempotency_keys=keys, db=database, validate=False)
    finally:
        database.close()


def messages_by_provider_id(url: str) -> tuple[int, int]:
    """(messages, distinct provider message ids)."""
    return tuple(
        query(url, "SELECT count(*), count(DISTINCT provider_message_id) FROM messages")[0]
    )


def status_counts(url: str) -> dict[str, int]:
    return dict(query(url, "SELECT status, count(*) FROM inbound_events GROUP BY 1"))


def process_env(url: str, env: dict | None = None) -> dict[str, str]:
    """This process's environment, with ``env`` added and ``DATABASE_URL`` set to ``url``."""
    full = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    full.update(env or {})
    full["DATABASE_URL"] = url
    return full


def start_worker(url: str, *args: str) -> subprocess.Popen:
    """``convdb queue-worker ARGS`` as a real process on ``url``."""
    return subprocess.Popen(
        [str(BIN / "convdb"), "queue-worker", *args],
        cwd=REPO,
        env=process_env(url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until(predicate, timeout: float = 20.0, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


# A password in every DATABASE_URL form of issue 11 (item 8). Each form is built
# on a URL of the test server ("postgresql://postgres@..."): PIECE marks every
# part of every password, so no output may contain it.
PIECE = "Zq8"


def url_forms(base: str) -> dict[str, str]:
    """Name -> DATABASE_URL holding a password, for a server URL ``base``."""
    from psycopg2.extensions import parse_dsn

    assert base.startswith("postgresql://postgres@"), base
    params = parse_dsn(base)
    after = base.removeprefix("postgresql://postgres@")
    query = "&" if "?" in base else "?"
    a, b, c = (f"{PIECE}{x}" for x in "abc")
    keywords = " ".join(f"{k}={v}" for k, v in params.items())
    return {
        "?password=": f"{base}{query}password={a}",
        "?sslpassword=": f"{base}{query}sslpassword={a}",
        "unencoded /": f"postgresql://postgres:{a}/{b}@{after}",
        "unencoded ?": f"postgresql://postgres:{a}?{b}@{after}",
        "unencoded #": f"postgresql://postgres:{a}#{b}@{after}",
        "unencoded @": f"postgresql://postgres:{a}@{b}@{after}",
        "unencoded / ? # @": f"postgresql://postgres:{a}/{b}?{c}#{a}@{b}@{after}",
        "percent-encoded": f"postgresql://postgres:{a}%2F{b}%40{c}@{after}",
        "keyword form": f"{keywords} password={a}",
        "keyword form, quoted": f"{keywords} password='{a} {b}'",
        "no scheme": f"postgres:{a}@{after}",
        "no scheme, //": f"//postgres:{a}@{after}",
        "another scheme": f"mysql://postgres:{a}@{after}",
        "broken %": f"postgresql://postgres:{a}%zz{b}@{after}",
        "broken % in ?password=": f"{base}{query}password={a}%zz",
        "unknown parameter": f"postgresql://postgres:{a}@{after}{query}foo=bar",
        "bad port": f"postgresql://postgres:{a}@127.0.0.1:notaport/x",
        "no database": f"postgresql://postgres:{a}@127.0.0.1:1",
        "unreachable": f"postgresql://postgres:{a}@127.0.0.1:1/x?connect_timeout=2",
    }


class ConvdbProcess:
    """``convdb ARGS`` as a real process on ``url``, its output (stdout and stderr) collected."""

    def __init__(self, url: str, *args: str, env: dict | None = None) -> None:
        self.proc = subprocess.Popen(
            [str(BIN / "convdb"), *args],
            cwd=REPO,
            env=process_env(url, env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._reader.join(5)


class WorkerProcess(ConvdbProcess):
    """``convdb queue-worker ARGS`` on ``url``, its output collected."""

    def __init__(self, url: str, *args: str, env: dict | None = None) -> None:
        super().__init__(url, "queue-worker", *args, env=env)
