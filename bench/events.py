"""Canonical ``message.received`` events for the queue benchmarks, generated in SQL.

Event ``i`` belongs to conversation ``i mod 100,000`` and customer
``i mod 1,000``: 1,000 customers, 100,000 conversations, 10 messages each per
million events. Even conversations are SMS (E.164 numbers), odd ones email
(mixed-case addresses, so normalization matters); half of the conversations
carry a ``conversation_key``, the others are threaded by their endpoints. Four
bodies in five come from a pool of 2,000 (duplicates for the dedup tables),
one in five is unique; one event in ten has an attachment from a pool of 500
URLs. ``message_id`` is unique per event.

Generating in SQL keeps the backlog set-up of a 200,000-event run to seconds;
:func:`payload` gives the same event as a Python dict, for the enqueue API.
"""

from __future__ import annotations

import datetime as dt

import psycopg2

CUSTOMERS = 1_000
CONVERSATIONS = 100_000
BODY_POOL = 2_000
URL_POOL = 500

PAYLOAD_SQL = f"""
jsonb_strip_nulls(jsonb_build_object(
    'customer', jsonb_build_object('key', 'bench-' || (i % {CUSTOMERS}),
                                   'name', 'Bench customer ' || (i % {CUSTOMERS})),
    'provider', jsonb_build_object(
        'kind', CASE WHEN i % 2 = 0 THEN 'sms' ELSE 'email' END,
        'name', CASE WHEN i % 2 = 0 THEN 'bench-sms' ELSE 'bench-mail' END),
    'direction', 'inbound',
    'message_id', %(tag)s || '-' || i,
    'from', CASE WHEN i % 2 = 0
                 THEN jsonb_build_object('address', '+1212' || (2000000 + i % {CONVERSATIONS}))
                 ELSE jsonb_build_object('address', 'Contact.' || (i % {CONVERSATIONS})
                                                    || '@Example.com',
                                         'name', 'Contact ' || (i % {CONVERSATIONS}))
            END,
    'to', jsonb_build_array(jsonb_build_object('address',
            CASE WHEN i % 2 = 0 THEN '+1646' || (2000000 + i % {CUSTOMERS})
                 ELSE 'support@customer' || (i % {CUSTOMERS}) || '.example' END)),
    'body', CASE WHEN i % 5 = 0 THEN 'A unique message, number ' || i || '.'
                 ELSE 'Hello,   this is common message ' || (i % {BODY_POOL}) || E'\\n' END,
    'sent_at', to_char(timestamptz '2025-01-01 00:00:00+00' + i * interval '3 seconds',
                       'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
    'conversation_key', CASE WHEN (i % {CONVERSATIONS}) % 4 < 2
                             THEN 'thread-' || (i % {CONVERSATIONS}) END,
    'attachments', CASE WHEN i % 10 = 0 THEN jsonb_build_array(jsonb_build_object(
                        'url', 'https://files.example/bench/' || (i % {URL_POOL}) || '.png',
                        'content_type', 'image/png')) END
))
"""

INSERT = f"""
INSERT INTO inbound_events (event_type, payload, status, processed_at)
SELECT 'message.received', {PAYLOAD_SQL.replace(" % ", " %% ")}, %(status)s,
       CASE WHEN %(status)s = 'done' THEN now() END
  FROM generate_series(%(first)s, %(last)s) i
"""


def insert(url: str, first: int, count: int, *, tag: str, status: str = "pending") -> None:
    """Insert events ``first .. first + count - 1`` with ``status`` by plain SQL."""
    conn = psycopg2.connect(url)
    try:
        step = 100_000
        for start in range(first, first + count, step):
            last = min(start + step, first + count) - 1
            with conn, conn.cursor() as cur:
                cur.execute(INSERT, {"first": start, "last": last, "tag": tag, "status": status})
    finally:
        conn.close()


def payload(i: int, tag: str = "api") -> dict:
    """Event ``i`` as a dict (the same shape as :data:`PAYLOAD_SQL`)."""
    conv, customer = i % CONVERSATIONS, i % CUSTOMERS
    sms = i % 2 == 0
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
