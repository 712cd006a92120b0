"""``make demo``: the whole flow from webhook events to conversations.

1. migrate the database (the embedded one unless ``DATABASE_URL`` is set);
2. enqueue the shipped sample of webhook events (``convdb/samples/webhooks.jsonl``:
   email and SMS/MMS for three customers, a webhook delivered twice, a message
   redelivered with another receipt time, and one bad event), as a webhook
   receiver would: ``message.received`` for inbound, ``message.sent`` for
   outbound, each with an idempotency key (a digest of the delivery);
3. drain the queue with the worker in burst mode;
4. print the queue statistics and the conversation overview.

Running it again stores nothing new: every delivery's idempotency key is
already there, and every message is unique on (provider, message id).
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
from collections.abc import Callable

from . import migrate as migrate_lib
from .cli.render import format_table, queue_stats_text
from .db import closing, connect, resolve_url
from .queue import ops
from .queue.enqueue import enqueue_many
from .queue.worker import WorkerConfig
from .queue.worker import run as run_worker

SAMPLE = "samples/webhooks.jsonl"
EVENT_TYPE = {"inbound": "message.received", "outbound": "message.sent"}


def sample_lines() -> list[str]:
    text = importlib.resources.files("convdb").joinpath(SAMPLE).read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip()]


def enqueue_sample(db) -> tuple[int, int]:
    """Enqueue the sample events; ``(stored, skipped as already stored)``."""
    batches: dict[str, tuple[list[dict], list[str]]] = {}
    for line in sample_lines():
        payload = json.loads(line)
        event_type = EVENT_TYPE.get(payload.get("direction"), "message.received")
        key = "demo:" + hashlib.sha256(line.encode("utf-8")).hexdigest()[:32]
        payloads, keys = batches.setdefault(event_type, ([], []))
        payloads.append(payload)
        keys.append(key)
    stored = total = 0
    with db.atomic():
        for event_type, (payloads, keys) in batches.items():
            stored += len(enqueue_many(event_type, payloads, idempotency_keys=keys, db=db))
            total += len(payloads)
    return stored, total - stored


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
    with closing(connect(url, bind=False)) as db:
        stored, skipped = enqueue_sample(db)
    echo(f"demo: enqueued {stored} sample webhook event(s), {skipped} already stored")
    counters = run_worker(url, config=WorkerConfig(burst=True, progress_interval=0))
    echo(
        f"demo: worker drained the queue: {counters.done} done, {counters.retried} retried, "
        f"{counters.dead} dead"
    )
    echo("")
    echo(queue_stats_text(ops.stats(url)))
    with closing(connect(url, bind=False)) as db:
        dead = db.execute_sql(DEAD).fetchall()
        rows = db.execute_sql(OVERVIEW).fetchall()
    if dead:
        echo("")
        echo("dead events (fix the payload, then `convdb queue retry-dead --id N`)")
        echo(format_table(["id", "event type", "error"], dead))
    echo("")
    echo("conversation_overview")
    headers = ["conversation", "customer", "topic", "messages", "participants"]
    echo(format_table([*headers, "who", "last message"], rows))
