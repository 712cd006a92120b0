"""``make demo``: the whole flow, from signed webhooks to conversations.

1. migrate the database (the embedded one unless ``DATABASE_URL`` is set);
2. register one Standard Webhooks endpoint per sample customer (a fresh
   secret each, passed to the server in its environment, as ``env:`` refs);
3. start ``convdb serve`` on a free local port;
4. POST the shipped sample (``convdb/samples/webhooks.jsonl``: email and
   SMS/MMS for three customers, a webhook delivered twice, a message
   redelivered with another receipt time, and one bad event, which the
   receiver refuses with 400 naming the field: nothing it acknowledged goes
   ``dead``) signed as a sender would, then one forged delivery, and show
   what each got; then one
   real-shaped webhook per provider adapter (Twilio, SendGrid, Mailgun,
   Postmark: :mod:`convdb.cli.demo_providers`) and a forged Twilio one;
   then three outbound SMS and their Twilio status callbacks (one early,
   one late, one bounce: :mod:`convdb.cli.demo_status`);
5. stop the server (SIGTERM), drain the queue with the worker in burst mode,
   and print the queue statistics, the conversation overview and the
   outbound messages' delivery status.

Running it again stores nothing new: each delivery's ``webhook-id`` is a
digest of it, and each customer's in-house sender is one provider, so the
receiver answers "duplicate"; every message is unique on (provider, message id).
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from .. import migrate as migrate_lib
from ..db import closing, connect, resolve_url
from ..exceptions import ConvdbError
from ..queue import ops
from ..queue.worker import WorkerConfig
from ..queue.worker import run as run_worker
from ..serve import endpoints
from ..serve.server import free_port, serve_command
from ..serve.standard import generate_secret, sign
from . import demo_providers, demo_status
from .render import format_table, queue_stats_text

SAMPLE = "samples/webhooks.jsonl"
EVENT_TYPE = {"inbound": "message.received", "outbound": "message.sent"}
SENDER = "inhouse-sender"


def sample_lines() -> list[str]:
    text = importlib.resources.files("convdb").joinpath(SAMPLE).read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip()]


def register(url: str) -> tuple[dict[str, str], dict[str, str]]:
    """One endpoint per sample customer; ``({key: path}, {env variable: secret})``."""
    customers: dict[str, str] = {}
    for line in sample_lines():
        customer = json.loads(line)["customer"]
        customers.setdefault(customer["key"], customer["name"])
    paths, env = {}, {}
    with closing(connect(url, bind=False)) as db:
        for key, name in customers.items():
            variable = "CONVDB_DEMO_SECRET_" + "".join(c if c.isalnum() else "_" for c in key)
            env[variable] = generate_secret()
            endpoints.remove(db, key, SENDER)  # an earlier run's URL
            new = endpoints.add(
                db,
                key,
                SENDER,
                kind="email",
                adapter="standard",
                secret_ref=f"env:{variable}",
                customer_name=name,
                known_adapters=["standard"],
            )
            paths[key] = new.path
    return paths, env


def start_server(url: str, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """``convdb serve`` on a free port; the process and its base URL, once healthy."""
    port = free_port()
    command = serve_command(port)
    proc = subprocess.Popen(
        command,
        env={**os.environ, **env, "DATABASE_URL": url},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ConvdbError("the demo server did not start:\n" + proc.stderr.read()[-2000:])
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=2):
                return proc, base
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    proc.kill()
    raise ConvdbError("the demo server did not answer /healthz within 30 s")


def post(base: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    request = urllib.request.Request(base + path, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def deliver(base: str, paths: dict[str, str], env: dict[str, str]) -> list[tuple]:
    """POST every sample line signed by its customer's sender, then a forged one."""
    secrets = dict(zip(paths, env.values(), strict=True))
    rows = []
    now = int(time.time())
    for number, line in enumerate(sample_lines(), start=1):
        payload = json.loads(line)
        key = payload["customer"]["key"]
        event = {
            "type": EVENT_TYPE.get(payload.get("direction"), "message.received"),
            "data": payload,
        }
        body = json.dumps(event).encode()
        msg_id = "demo_" + hashlib.sha256(line.encode("utf-8")).hexdigest()[:32]
        headers = {**sign(secrets[key], msg_id, now, body), "content-type": "application/json"}
        status, text = post(base, paths[key], body, headers)
        rows.append((number, key, payload.get("message_id"), status, text))
    payload = json.loads(sample_lines()[0])
    body = json.dumps({"type": "message.received", "data": {**payload, "body": "Pay me"}}).encode()
    forged = {
        **sign(generate_secret(), "demo_forged", now, body),
        "content-type": "application/json",
    }
    status, text = post(base, paths[payload["customer"]["key"]], body, forged)
    rows.append(("forged", payload["customer"]["key"], payload["message_id"], status, text))
    return rows


OVERVIEW = """
SELECT o.conversation_id, cu.name, c.topic, o.message_count, o.participant_count,
       (SELECT string_agg(coalesce(ct.display_name, ea.raw, pn.e164) || ' (' || p.role || ')',
                          ', ' ORDER BY p.role DESC, ct.id)
          FROM conversation_participants p
          JOIN contacts ct ON ct.id = p.contact_id
          LEFT JOIN contact_addresses ca ON ca.contact_id = ct.id
          LEFT JOIN email_addresses ea ON ea.id = ca.email_address_id
          LEFT JOIN phone_numbers pn ON pn.id = ca.phone_number_id
         WHERE p.conversation_id = o.conversation_id) AS participants,
       o.last_message_at
  FROM conversation_overview o
  JOIN conversations c ON c.id = o.conversation_id
  JOIN customers cu ON cu.id = o.customer_id
 ORDER BY o.last_message_at DESC NULLS LAST, o.conversation_id
"""

DEAD = "SELECT id, event_type, last_error FROM inbound_events WHERE status = 'dead' ORDER BY id"


def run(url: str | None = None, echo: Callable[[str], None] = print) -> None:
    url = url or resolve_url()
    migrate_lib.run(url, echo=echo)
    paths, env = register(url)
    provider_paths, provider_env, provider_secrets = demo_providers.register(url)
    proc, base = start_server(url, {**env, **provider_env})
    try:
        echo(f"demo: convdb serve on {base}, one endpoint per customer (Standard Webhooks)")
        rows = deliver(base, paths, env)
        provider_rows = demo_providers.deliver(base, provider_paths, provider_secrets, post)
        secrets = dict(zip(paths, env.values(), strict=True))
        status_rows = demo_status.deliver(
            base,
            (paths["acme"], secrets["acme"]),
            (provider_paths["twilio"], provider_secrets["twilio"]),
            post,
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    echo(format_table(["delivery", "customer", "message id", "HTTP", "answer"], rows))
    answered = [row[3] for row in rows]
    for number, _key, _message_id, code, text in rows:
        if code == 400:
            detail = json.loads(text).get("detail", "")
            echo(f"demo: delivery {number} refused, nothing stored (the sender fixes it): {detail}")
    echo(
        f"demo: {len(rows)} POSTs: {sum(r[4].find('stored') > 0 for r in rows)} stored, "
        f"{sum(r[4].find('duplicate') > 0 for r in rows)} duplicate (2xx, stored once), "
        f"{sum(code >= 400 for code in answered)} refused; server stopped (exit {proc.returncode})"
    )
    echo("")
    echo("provider adapters: one webhook each, as the provider sends it (signed or basic auth)")
    echo(format_table(["provider", "customer", "message id", "HTTP", "answer"], provider_rows))
    echo("")
    echo("delivery status: outbound SMS and Twilio's status callbacks (docs/status.md)")
    echo(format_table(["request", "message", "HTTP"], status_rows))
    counters = run_worker(url, config=WorkerConfig(burst=True, progress_interval=0))
    echo(
        f"demo: worker drained the queue: {counters.done} done, {counters.retried} retried, "
        f"{counters.dead} dead"
    )
    echo("")
    echo(queue_stats_text(ops.stats(url)))
    with closing(connect(url, bind=False)) as db:
        dead = db.execute_sql(DEAD).fetchall()
        overview = db.execute_sql(OVERVIEW).fetchall()
        statuses = db.execute_sql(demo_status.STATUS_TABLE).fetchall()
    if dead:
        echo("")
        echo("dead events (fix the payload, then `convdb queue retry-dead --id N`)")
        echo(format_table(["id", "event type", "error"], dead))
    echo("")
    echo("conversation_overview")
    headers = ["conversation", "customer", "topic", "messages", "participants"]
    echo(format_table([*headers, "who", "last message"], overview))
    echo("")
    echo("delivery status of the outbound SMS (messages.status, message_status_reports)")
    echo(format_table(["message", "status", "status at", "reports (provider's words)"], statuses))
