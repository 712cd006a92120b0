"""One writer, whatever the batching: a hypothesis property over lists of canonical payloads.

Each example is a list of payloads drawn from small pools, so customers,
providers, addresses (one address on both sides of a message, too),
conversation keys, bodies, attachment URLs and message ids repeat (a
repeated message id is a redelivery); some payloads are invalid. The list is
ingested through the queue handlers three ways, each inside one transaction
that is rolled back afterwards (one database for every example): event by
event, as one batch, and in batches split at drawn points. The rows written
(ids aside), the conversation counters and the refused events must be the
same all three ways, and the counters must equal what the rows add up to.

The number of examples comes from the hypothesis profile (tests/conftest.py):
``HYPOTHESIS_PROFILE=ci`` (set by ``.ci/run``) runs 200.
"""

from __future__ import annotations

import datetime as dt
import itertools
from types import SimpleNamespace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convdb.exceptions import PayloadError
from convdb.ingest import (
    handle_batch,
    handle_message_received,
    handle_message_sent,
    parse_message,
)

from ..support import ACTUAL, STORED, snapshot

CUSTOMERS = [("acme", "Acme, Inc."), ("globex", "Globex")]
PROVIDERS = [("email", "sendgrid"), ("sms", "twilio"), ("mms", "twilio")]
EMAILS = ["Jane.Doe@Example.com", "jane.doe@example.com", "support@acme.example", "tom@x.example"]
PHONES = ["+14155552671", "(415) 555-2671", "+14155550100", "+442079460958"]
NAMES = [None, "Jane Doe", "Tom"]
BODIES = ["Hello,   we need help\n", "Hello, we need help", "", "Thanks!", "  \n"]
URLS = [
    "https://files.example/a.png",
    "https://files.example/b.pdf",
    " https://files.example/a.png",
]
T0 = dt.datetime(2025, 11, 5, 8, 0, tzinfo=dt.UTC)
# Each makes a payload invalid, in a field the rest of the list may still use validly.
BREAKS = [
    {"message_id": None},
    {"sent_at": "0001-01-01T00:00:00+02:00"},
    {"attachments": [{"url": "javascript:alert(1)"}]},
    {"from": {"address": "a@b@c"}},
    {"direction": "sideways"},
]


@st.composite
def payloads(draw) -> dict:
    key, name = draw(st.sampled_from(CUSTOMERS))
    kind, provider = draw(st.sampled_from(PROVIDERS))
    pool = EMAILS if kind == "email" else PHONES
    ends = [{"address": draw(st.sampled_from(pool)), "name": draw(st.sampled_from(NAMES))}]
    ends += [{"address": draw(st.sampled_from(pool))} for _ in range(draw(st.integers(1, 2)))]
    payload = {
        "customer": {"key": key, "name": name},
        "provider": {"kind": kind, "name": provider},
        "direction": draw(st.sampled_from(["inbound", "outbound"])),
        "message_id": f"m-{draw(st.integers(0, 9))}",
        "from": ends[0],
        "to": ends[1:],
        "body": draw(st.sampled_from(BODIES)),
        "sent_at": (T0 + dt.timedelta(minutes=draw(st.integers(0, 5)))).isoformat(),
    }
    if draw(st.booleans()):
        payload["subject"] = draw(st.sampled_from(["Onboarding", "Re: Onboarding"]))
    if draw(st.booleans()):
        payload["conversation_key"] = draw(st.sampled_from(["thread-1", "thread-2"]))
    if draw(st.booleans()):
        payload["received_at"] = "2025-11-05T09:00:00Z"
    files = draw(st.lists(st.sampled_from(URLS), max_size=2))
    if files:
        payload["attachments"] = [{"url": u, "content_type": "image/png"} for u in files]
    if draw(st.integers(0, 9)) == 0:
        payload.update(draw(st.sampled_from(BREAKS)))
    return {k: v for k, v in payload.items() if v is not None}


def events_of(payloads: list[dict]) -> list[SimpleNamespace]:
    types = ["message.received", "message.sent"]
    return [
        SimpleNamespace(id=i, event_type=types[i % 2], payload=p) for i, p in enumerate(payloads)
    ]


def one_by_one(events) -> set[int]:
    refused = set()
    handlers = {"message.received": handle_message_received, "message.sent": handle_message_sent}
    for event in events:
        try:
            handlers[event.event_type](event)
        except PayloadError:
            refused.add(event.id)
    return refused


def in_batches(events, cuts: list[int]) -> set[int]:
    refused: set[int] = set()
    bounds = [0, *sorted(set(cuts)), len(events)]
    for start, end in itertools.pairwise(bounds):
        if start < end:
            refused.update(handle_batch(events[start:end]))
    return refused


def outcome(db, ingest) -> tuple[dict, set[int]]:
    """Rows, counters and refused events of ``ingest()``, in a transaction rolled back."""

    def rows(sql: str) -> list[tuple]:
        return db.execute_sql(sql).fetchall()

    with db.atomic() as transaction:
        refused = ingest()
        written = snapshot(rows)
        assert rows(STORED) == rows(ACTUAL)  # the counters add up
        transaction.rollback()
    return written, refused


def parsed(event):
    try:
        return parse_message(event.payload, event.event_type)
    except PayloadError:
        return None


# One database for every example (each rolls back), hence the fixture's scope.
@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    payload_list=st.lists(payloads(), min_size=1, max_size=12),
    cuts=st.lists(st.integers(0, 12), max_size=4),
)
def test_batching_never_changes_what_is_written(db, payload_list, cuts):
    events = events_of(payload_list)
    expected = outcome(db, lambda: one_by_one(events))
    assert outcome(db, lambda: in_batches(events, [])) == expected
    assert outcome(db, lambda: in_batches(events, cuts)) == expected
    written, refused = expected
    valid = {e.id: parsed(e) for e in events}
    assert refused == {i for i, msg in valid.items() if msg is None}
    # A message per provider and message id: redeliveries write nothing.
    stored = {
        (m.customer_key, m.provider_kind, m.provider_name, m.message_id)
        for m in valid.values()
        if m is not None
    }
    assert len(written["messages"]) == len(stored)
