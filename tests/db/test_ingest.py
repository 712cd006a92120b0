"""Canonical message events: validation (with hypothesis) and ingestion on a real database."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convdb import db as convdb_db
from convdb.exceptions import PayloadError
from convdb.ingest import ingest_message, parse_message
from convdb.testing import query, scalar

from ..support import example


def ingest(db, payload, event_type=None):
    with db.atomic():
        return ingest_message(db, parse_message(payload, event_type))


# --- validation -----------------------------------------------------------------------


def test_parse_the_spec_example():
    msg = parse_message(example())
    assert msg.customer_key == "acme" and msg.provider_kind == "email"
    assert msg.sender.normalized == "jane.doe@example.com"
    assert msg.sent_at == dt.datetime(2025, 11, 5, 8, 0, tzinfo=dt.UTC)
    assert msg.received_at == dt.datetime(2025, 11, 5, 8, 0, 5, tzinfo=dt.UTC)
    assert msg.attachments == (("https://files.example/a.png", "image/png", None, None),)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"customer": None}, "customer: missing"),
        ({"customer": {"name": "x"}}, "customer.key: missing"),
        ({"customer": "acme"}, "customer: expected an object"),
        ({"provider": {"kind": "fax", "name": "x"}}, "provider.kind: 'fax'"),
        ({"provider": {"kind": "email"}}, "provider.name: missing"),
        ({"direction": "sideways"}, "direction: 'sideways'"),
        ({"message_id": None}, "message_id: missing"),
        ({"message_id": ["x"]}, "message_id: expected a string"),
        ({"sender": {"name": "no address"}}, "from.address: missing"),
        ({"sender": {"address": "not-an-email"}}, "from.address: not an email address"),
        ({"to": []}, "to: expected a non-empty list"),
        ({"to": [{"address": "a@b.c"}, {"address": 5}]}, "to[1].address: expected a string"),
        ({"body": None}, "body: missing"),
        ({"body": 12}, "body: expected a string"),
        ({"sent_at": "2025-11-05 10:00:00"}, "sent_at: no time zone"),
        ({"sent_at": "yesterday"}, "sent_at: not an ISO 8601 timestamp"),
        ({"received_at": "2025-11-05T10:00:00"}, "received_at: no time zone"),
        ({"attachments": {"url": "x"}}, "attachments: expected a list"),
        ({"attachments": [{"content_type": "a/b"}]}, "attachments[0].url: missing"),
        ({"conversation_key": "x" * 501}, "conversation_key: longer than 500"),
        ({"subject": "nul\x00"}, "subject: contains a NUL"),
    ],
)
def test_bad_payload_names_the_field(changes, field):
    with pytest.raises(PayloadError) as info:
        parse_message(example(**changes))
    assert field in str(info.value)


def test_phone_without_digits_is_refused():
    payload = example(provider={"kind": "sms", "name": "twilio"}, sender={"address": "hello"})
    with pytest.raises(PayloadError, match=r"from\.address: not a phone number"):
        parse_message(payload)


def test_direction_defaults_from_the_event_type():
    assert parse_message(example(direction=None), "message.sent").direction == "outbound"
    with pytest.raises(PayloadError, match="direction: missing"):
        parse_message(example(direction=None))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=10,
)
FIELDS = list(example())


@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from(FIELDS), value=json_values)
def test_any_field_value_is_accepted_or_a_payload_error(field, value):
    """Whatever JSON a field holds, validation ends in a message or a PayloadError naming it."""
    payload = example()
    payload[field] = value
    try:
        parse_message(payload)
    except PayloadError as exc:
        assert str(exc).split(":")[0].split(".")[0].split("[")[0] in (field, "payload")


@settings(max_examples=100, deadline=None)
@given(
    offset=st.integers(min_value=-14 * 60, max_value=14 * 60),
    when=st.datetimes(min_value=dt.datetime(1971, 1, 1), max_value=dt.datetime(2100, 1, 1)),
)
def test_sent_at_is_the_same_instant_in_utc(offset, when):
    tz = dt.timezone(dt.timedelta(minutes=offset))
    aware = when.replace(tzinfo=tz)
    msg = parse_message(example(sent_at=aware.isoformat()))
    assert msg.sent_at == aware and msg.sent_at.utcoffset() == dt.timedelta(0)


# --- ingestion ----------------------------------------------------------------------------


def test_ingest_the_spec_example(db, db_url):
    message_id = ingest(db, example())
    row = query(
        db_url,
        "SELECT cu.key, cu.name, p.kind, p.name, m.provider_message_id, m.direction, m.sent_at, "
        "       eb.raw, eb.normalized, c.topic, c.key "
        "FROM messages m JOIN conversations c ON c.id = m.conversation_id "
        "JOIN customers cu ON cu.id = c.customer_id JOIN providers p ON p.id = m.provider_id "
        "JOIN email_bodies eb ON eb.id = m.email_body_id WHERE m.id = %s",
        (message_id,),
    )[0]
    assert row[:6] == ("acme", "Acme, Inc.", "email", "sendgrid", "provider-msg-0001", "inbound")
    assert row[6] == dt.datetime(2025, 11, 5, 8, 0, tzinfo=dt.UTC)
    assert row[7:] == ("Hello,   we need help\n", "Hello, we need help", "Onboarding", "thread-42")
    participants = query(
        db_url,
        "SELECT p.role, ea.lowered, ct.display_name FROM conversation_participants p "
        "JOIN contacts ct ON ct.id = p.contact_id "
        "JOIN contact_addresses ca ON ca.contact_id = ct.id "
        "JOIN email_addresses ea ON ea.id = ca.email_address_id ORDER BY p.role",
    )
    assert participants == [
        ("contact", "jane.doe@example.com", "Jane Doe"),
        ("customer", "support@acme.example", "Acme, Inc."),
    ]
    assert query(db_url, "SELECT kind, normalized FROM endpoint_mappings") == [
        ("email", "support@acme.example")
    ]
    assert query(db_url, "SELECT body_text, attachments_count FROM conversation_messages") == [
        ("Hello,   we need help\n", 1)
    ]


def test_redelivery_creates_no_second_message(db, db_url):
    assert ingest(db, example()) is not None
    again = example(received_at="2025-11-05T09:00:00Z", body="changed", conversation_key="x")
    assert ingest(db, again) is None
    assert scalar(db_url, "SELECT count(*) FROM messages") == 1
    assert scalar(db_url, "SELECT count(*) FROM conversations") == 1
    assert scalar(db_url, "SELECT count(*) FROM message_attachments") == 1


def test_grouping_by_key_and_by_endpoints(db, db_url):
    sms = {"kind": "sms", "name": "twilio"}
    mms = {"kind": "mms", "name": "twilio"}
    them, us = {"address": "(415) 555-2671"}, {"address": "+14155550100"}
    base = {"provider": sms, "sender": them, "to": [us], "conversation_key": None}
    base.update(subject=None, attachments=None)
    ingest(db, example(message_id="1", **base))
    ingest(db, example(message_id="2", **{**base, "provider": mms}))  # mms joins sms
    reply = {**base, "direction": "outbound", "sender": us, "to": [{"address": "4155552671"}]}
    ingest(db, example(message_id="3", **reply))
    ingest(db, example(message_id="4"))  # email, keyed thread-42
    ingest(db, example(message_id="5", conversation_key=None))  # email, no key: its own
    ingest(db, example(message_id="6", customer={"key": "globex", "name": "Globex"}))
    counts = query(
        db_url,
        "SELECT cu.key, c.key, c.thread_key, count(m.id) FROM conversations c "
        "JOIN customers cu ON cu.id = c.customer_id JOIN messages m ON m.conversation_id = c.id "
        "GROUP BY 1, 2, 3 ORDER BY 1, 4 DESC, 2",
    )
    assert counts == [
        ("acme", None, '["xms", "+14155550100", "+14155552671"]', 3),
        ("acme", "thread-42", None, 1),
        ("acme", None, '["email", "support@acme.example", "jane.doe@example.com"]', 1),
        ("globex", "thread-42", None, 1),
    ]
    assert scalar(db_url, "SELECT count(*) FROM providers") == 4
    assert scalar(db_url, "SELECT count(*) FROM contacts WHERE customer_id = 1") == 4
    assert scalar(db_url, "SELECT count(*) FROM xms_bodies") == 1  # the same text, stored once


def test_empty_body_has_no_body_row(db, db_url):
    ingest(db, example(body="  \n"))
    assert query(db_url, "SELECT email_body_id, xms_body_id FROM messages") == [(None, None)]


def test_concurrent_ingestion_of_new_keys_creates_no_duplicates(db_url):
    """Eight threads ingest different messages of one new customer/contact/conversation."""
    barrier = threading.Barrier(8)
    errors = []

    def one(n: int) -> None:
        database = convdb_db.open_database(db_url)
        try:
            barrier.wait()
            with database.atomic():
                ingest_message(database, parse_message(example(message_id=f"c-{n}")))
        except Exception as exc:  # collected, asserted below
            errors.append(exc)
        finally:
            database.close()

    threads = [threading.Thread(target=one, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert query(
        db_url,
        "SELECT (SELECT count(*) FROM customers), (SELECT count(*) FROM providers), "
        "(SELECT count(*) FROM contacts), (SELECT count(*) FROM contact_addresses), "
        "(SELECT count(*) FROM conversations), (SELECT count(*) FROM messages), "
        "(SELECT count(*) FROM conversation_participants)",
    ) == [(1, 1, 2, 2, 1, 8, 2)]
