"""Canonical ``message.received`` events for the queue benchmarks, generated in SQL.

Event ``i`` belongs to conversation ``conv``, which decides its customer
(``conv mod 1,000``), its channel (even conversations are SMS with E.164
numbers, odd ones email with mixed-case addresses, so normalization matters)
and its threading (half of the conversations carry a ``conversation_key``,
the others are threaded by their endpoints). Four bodies in five come from a
pool of 2,000 (duplicates for the dedup tables), one in five is unique; one
event in ten has an attachment from a pool of 500 URLs. ``message_id`` is
unique per event. Which conversation, by ``mix``:

- ``spread`` (the default): ``conv = i mod 100,000``, 1,000 customers and
  10 messages per conversation per million events (the worker-loaded
  dataset). On an empty database, each of the first 100,000 events opens its
  conversation.
- ``mixed``: one event in ten (``i mod 10 = 5``) opens a conversation of its
  own, the others go to ``warm`` conversations (``i mod warm``) that a
  ``warmup`` drain created first: the dataset's ratio of 10 messages per
  conversation, in every slice of the backlog. The drain figures use it.
- ``warmup``: ``conv = i mod warm``, to create those conversations.
- ``fresh``: every event opens a conversation of its own (the worst case).

``fresh`` and ``mixed`` conversations are numbered from ``FRESH_BASE + i``:
give every insert its own range of ``i`` (:func:`next_index`).

Generating in SQL keeps the backlog set-up of a 200,000-event run to seconds;
:func:`payload` gives the ``spread`` event as a Python dict, for the enqueue API.
"""

from __future__ import annotations

import datetime as dt

import psycopg2

CUSTOMERS = 1_000
CONVERSATIONS = 100_000
BODY_POOL = 2_000
URL_POOL = 500
FRESH_BASE = 1_000_000
WARM = 2_000  # conversations of the mixed backlog that exist before it is drained

# ``%%``: the statement goes through psycopg2's parameter substitution.
CONVERSATION_SQL = {
    "spread": f"i %% {CONVERSATIONS}",
    "mixed": f"CASE WHEN i %% 10 = 5 THEN {FRESH_BASE} + i ELSE i %% %(warm)s END",
    "warmup": "i %% %(warm)s",
    "fresh": f"{FRESH_BASE} + i",
}

PAYLOAD_SQL = f"""
jsonb_strip_nulls(jsonb_build_object(
    'customer', jsonb_build_object('key', 'bench-' || (conv % {CUSTOMERS}),
                                   'name', 'Bench customer ' || (conv % {CUSTOMERS})),
    'provider', jsonb_build_object(
        'kind', CASE WHEN conv % 2 = 0 THEN 'sms' ELSE 'email' END,
        'name', CASE WHEN conv % 2 = 0 THEN 'bench-sms' ELSE 'bench-mail' END),
    'direction', 'inbound',
    'message_id', %(tag)s || '-' || i,
    'from', CASE WHEN conv % 2 = 0
                 THEN jsonb_build_object('address', '+1212' || (2000000 + conv))
                 ELSE jsonb_build_object('address', 'Contact.' || conv
                                                    || '@Example.com',
                                         'name', 'Contact ' || conv)
            END,
    'to', jsonb_build_array(jsonb_build_object('address',
            CASE WHEN conv % 2 = 0 THEN '+1646' || (2000000 + conv % {CUSTOMERS})
                 ELSE 'support@customer' || (conv % {CUSTOMERS}) || '.example' END)),
    'body', CASE WHEN i % 5 = 0 THEN 'A unique message, number ' || i || '.'
                 ELSE 'Hello,   this is common message ' || (i % {BODY_POOL}) || E'\\n' END,
    'sent_at', to_char(timestamptz '2025-01-01 00:00:00+00' + i * interval '3 seconds',
                       'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
    'conversation_key', CASE WHEN conv % 4 < 2
                             THEN 'thread-' || conv END,
    'attachments', CASE WHEN i % 10 = 0 THEN jsonb_build_array(jsonb_build_object(
                        'url', 'https://files.example/bench/' || (i % {URL_POOL}) || '.png',
                        'content_type', 'image/png')) END
))
"""

INSERT = """
INSERT INTO inbound_events (event_type, payload, status, processed_at)
SELECT 'message.received', {payload}, %(status)s,
       CASE WHEN %(status)s = 'done' THEN now() END
  FROM generate_series(%(first)s, %(last)s) i, LATERAL (SELECT {conversation} AS conv) c
"""


def insert(
    url: str,
    first: int,
    count: int,
    *,
    tag: str,
    status: str = "pending",
    mix: str = "spread",
    warm: int = WARM,
) -> None:
    """Insert events ``first .. first + count - 1`` with ``status`` by plain SQL."""
    sql = INSERT.format(
        payload=PAYLOAD_SQL.replace(" % ", " %% "), conversation=CONVERSATION_SQL[mix]
    )
    conn = psycopg2.connect(url)
    try:
        step = 100_000
        for start in range(first, first + count, step):
            last = min(start + step, first + count) - 1
            with conn, conn.cursor() as cur:
                params = {"first": start, "last": last, "tag": tag, "status": status}
                cur.execute(sql, {**params, "warm": warm})
    finally:
        conn.close()


def next_index(url: str) -> int:
    """An ``i`` above every event stored so far (ids only grow): the ``first`` of
    an insert whose ``fresh``/``mixed`` conversations no earlier insert used."""
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT coalesce(max(id), 0) + 1 FROM inbound_events")
            return cur.fetchone()[0]
    finally:
        conn.close()


def payload(i: int, tag: str = "api") -> dict:
    """Event ``i`` of the ``spread`` mix as a dict (the same as :data:`PAYLOAD_SQL`)."""
    conv = i % CONVERSATIONS
    customer = conv % CUSTOMERS
    sms = conv % 2 == 0
    event = {
        "customer": {"key": f"bench-{customer}", "name": f"Bench customer {customer}"},
        "provider": {
            "kind": "sms" if sms else "email",
            "name": "bench-sms" if sms else "bench-mail",
        },
        "direction": "inbound",
        "message_id": f"{tag}-{i}",
        "from": {"address": f"+1212{2000000 + conv}"}
        if sms
        else {"address": f"Contact.{conv}@Example.com", "name": f"Contact {conv}"},
        "to": [
            {
                "address": f"+1646{2000000 + customer}"
                if sms
                else f"support@customer{customer}.example"
            }
        ],
        "body": f"A unique message, number {i}."
        if i % 5 == 0
        else f"Hello,   this is common message {i % BODY_POOL}\n",
        "sent_at": (dt.datetime(2025, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=3 * i)).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        ),
    }
    if conv % 4 < 2:
        event["conversation_key"] = f"thread-{conv}"
    if i % 10 == 0:
        event["attachments"] = [
            {"url": f"https://files.example/bench/{i % URL_POOL}.png", "content_type": "image/png"}
        ]
    return event
