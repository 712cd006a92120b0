"""Delivery status (issue 17, points 1-4 and 7): ``message.status`` on real PostgreSQL.

The status is a function of the set of reports (highest rank, earliest ``at``
of that rank), every report is kept once, early reports wait for their
message and are applied by the ``message.sent`` path, and a report is
matched only within its own provider.
"""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convdb.exceptions import PayloadError
from convdb.ingest import ingest_messages, parse_event, parse_message, parse_status
from convdb.ingest.status import STATUSES, early_count, merge, purge_early, record_reports
from convdb.testing import query

CUSTOMER = {"key": "acme", "name": "Acme"}
PROVIDER = {"kind": "sms", "name": "twilio"}
T0 = dt.datetime(2026, 1, 5, 10, 0, tzinfo=dt.UTC)


def sent(message_id: str = "SM1", customer=CUSTOMER, provider=PROVIDER) -> dict:
    return {
        "customer": customer,
        "provider": provider,
        "message_id": message_id,
        "from": {"address": "+12125550100"},
        "to": [{"address": "+14155550123"}],
        "body": "Your order shipped",
        "sent_at": "2026-01-05T09:59:00Z",
    }


def report(status, minutes=0, message_id="SM1", **extra) -> dict:
    payload = {
        "customer": extra.pop("customer", CUSTOMER),
        "provider": extra.pop("provider", PROVIDER),
        "message_id": message_id,
        "status": status,
        "at": (T0 + dt.timedelta(minutes=minutes)).isoformat(),
    }
    payload.update(extra)
    return payload


def store_sent(db, *payloads):
    with db.atomic():
        return ingest_messages(db, [parse_message(p, "message.sent") for p in payloads])


def record(db, *payloads):
    with db.atomic():
        record_reports(db, [parse_status(p) for p in payloads])


def state(db_url, message_id="SM1"):
    rows = query(
        db_url,
        "SELECT cm.status, cm.status_at FROM conversation_messages cm JOIN messages m "
        "ON m.id = cm.message_id WHERE m.provider_message_id = %s",
        (message_id,),
    )
    return rows[0] if rows else None


# --- 1. the canonical event -------------------------------------------------------


def test_a_status_payload_is_validated_by_the_canonical_function():
    parsed = parse_event("message.status", report("delivered", detail="DELIVRD"))
    assert (parsed.status, parsed.word, parsed.detail) == ("delivered", "DELIVRD", "DELIVRD")
    assert parsed.at == T0
    for bad, field in [
        ({"status": "bounced"}, "status:"),
        ({"at": "2026-01-05 10:00"}, "at:"),
        ({"at": None}, "at:"),
        ({"message_id": ""}, "message_id:"),
        ({"detail": "x" * 501}, "detail:"),
        ({"provider": {"kind": "fax", "name": "x"}}, "provider.kind:"),
    ]:
        payload = report("sent")
        payload.update(bad)
        with pytest.raises(PayloadError, match=field):
            parse_event("message.status", payload)
    no_status = report("sent")
    del no_status["status"]
    with pytest.raises(PayloadError, match="status: missing"):
        parse_status(no_status)
    with pytest.raises(PayloadError, match="word: missing"):
        parse_status(report(None))
    assert parse_status(report(None, word="deferred")).status is None


def test_message_status_has_a_handler_in_the_core():
    from convdb import plugins

    assert "message.status" in plugins.load_handlers()
    assert "message.status" in plugins.load_batch_handlers()


# --- 2. the data ------------------------------------------------------------------


def test_a_report_sets_status_and_is_kept_once_in_the_history(db, db_url):
    store_sent(db, sent())
    assert state(db_url) == (None, None)
    record(db, report("delivered", 2, detail="DELIVRD"))
    record(db, report("delivered", 2, detail="DELIVRD"))  # the same report again
    assert state(db_url) == ("delivered", T0 + dt.timedelta(minutes=2))
    history = query(
        db_url,
        "SELECT word, status, detail, message_id IS NOT NULL FROM message_status_reports",
    )
    assert history == [("DELIVRD", "delivered", "DELIVRD", True)]


def test_reports_with_an_event_id_are_kept_once_by_it(db, db_url):
    store_sent(db, sent())
    record(db, report("sent", 1, event_id="ev-1"), report("sent", 1, event_id="ev-2"))
    record(db, report("sent", 1, event_id="ev-1"))
    keys = query(db_url, "SELECT event_key FROM message_status_reports ORDER BY 1")
    assert keys == [("ev-1",), ("ev-2",)]


def test_reports_that_change_nothing_are_kept_with_the_providers_word(db, db_url):
    store_sent(db, sent())
    record(
        db,
        report(None, 1, word="deferred"),
        report(None, 2, word="bogus-word", detail="bogus-word"),
        report("sent", 3),
    )
    assert state(db_url) == ("sent", T0 + dt.timedelta(minutes=3))
    rows = query(db_url, "SELECT word, status FROM message_status_reports ORDER BY at")
    assert rows == [("deferred", None), ("bogus-word", None), ("sent", "sent")]


def test_failures_per_customer_latest_first(db, db_url):
    other = {"key": "globex", "name": "Globex"}
    store_sent(db, sent("A"), sent("B"), sent("C", customer=other))
    record(
        db,
        report("failed", 1, "A", detail="30003", word="undelivered"),
        report("failed", 5, "B", detail="30005", word="failed"),
        report("failed", 3, "C", customer=other),
    )
    rows = query(
        db_url,
        "SELECT f.provider_message_id, f.word, f.detail FROM message_failures f "
        "JOIN customers c ON c.id = f.customer_id WHERE c.key = 'acme' "
        "ORDER BY failed_at DESC, message_id DESC LIMIT 50",
    )
    assert rows == [("B", "failed", "30005"), ("A", "undelivered", "30003")]


def test_inbound_messages_have_no_status(db, db_url):
    payload = sent("IN1")
    payload["from"], payload["to"] = payload["to"][0], [payload["from"]]
    with db.atomic():
        ingest_messages(db, [parse_message(payload, "message.received")])
    record(db, report("delivered", 1, "IN1"))
    assert state(db_url, "IN1") == (None, None)


def test_history_rows_go_with_their_message(db, db_url):
    store_sent(db, sent())
    record(db, report("sent", 1), report("delivered", 2))
    db.execute_sql("DELETE FROM messages")
    assert query(db_url, "SELECT count(*) FROM message_status_reports") == [(0,)]


# --- 3. order ---------------------------------------------------------------------


def test_a_late_sent_does_not_overwrite_delivered(db, db_url):
    store_sent(db, sent())
    record(db, report("delivered", 5))
    record(db, report("sent", 1))
    assert state(db_url) == ("delivered", T0 + dt.timedelta(minutes=5))
    assert query(db_url, "SELECT count(*) FROM message_status_reports") == [(2,)]


def test_failed_replaces_delivered_and_read_replaces_failed(db, db_url):
    store_sent(db, sent())
    record(db, report("delivered", 1))
    record(db, report("failed", 2))
    assert state(db_url)[0] == "failed"
    record(db, report("read", 3))
    record(db, report("failed", 0))
    assert state(db_url) == ("read", T0 + dt.timedelta(minutes=3))


def test_status_at_is_the_earliest_at_of_the_winning_status(db, db_url):
    store_sent(db, sent())
    record(db, report("delivered", 7, detail="a"))
    record(db, report("delivered", 4, detail="b"), report("delivered", 9, detail="c"))
    assert state(db_url) == ("delivered", T0 + dt.timedelta(minutes=4))


REPORTS = [
    ("queued", 0),
    ("sent", 1),
    ("delivered", 3),
    ("delivered", 2),
    ("failed", 4),
    ("sent", 5),
    (None, 6),
]


def expected_state(reports):
    best = None
    for status, minutes in reports:
        if status is not None:
            best = merge(best, (status, T0 + dt.timedelta(minutes=minutes)))
    return best


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    order=st.permutations(range(len(REPORTS))),
    cuts=st.lists(st.integers(0, len(REPORTS)), max_size=3),
    early=st.integers(0, len(REPORTS)),
)
def test_any_order_and_grouping_ends_in_the_same_state(db, db_url, order, cuts, early):
    """Reports in any order, any split into batches, the message arriving at any
    point (before it, reports are early): always the set's state."""
    db.execute_sql("DELETE FROM messages; DELETE FROM message_status_reports")
    items = [REPORTS[i] for i in order]
    bounds = sorted({0, len(items), *cuts, early})
    for start, end in itertools.pairwise(bounds):
        if start == early:
            store_sent(db, sent())
        batch = items[start:end]
        if batch:
            record(
                db,
                *(report(s, m, word=s or "deferred", detail=f"r{m}") for s, m in batch),
            )
    if early == len(items):
        store_sent(db, sent())
    want = expected_state(REPORTS)
    assert state(db_url) == want
    assert query(db_url, "SELECT count(*) FROM message_status_reports") == [(len(REPORTS),)]
    assert early_count(db) == 0


def test_merge_is_commutative_associative_and_idempotent():
    states = [(s, T0 + dt.timedelta(minutes=m)) for s in STATUSES for m in (0, 1)]
    for a, b, c in itertools.product(states, repeat=3):
        assert merge(a, b) == merge(b, a)
        assert merge(merge(a, b), c) == merge(a, merge(b, c))
        assert merge(a, a) == a


# --- 4. early reports ---------------------------------------------------------------


def test_an_early_report_is_kept_and_applied_when_the_message_arrives(db, db_url):
    record(db, report("delivered", 3), report("sent", 1))
    assert query(db_url, "SELECT count(*) FROM messages") == [(0,)]
    assert early_count(db) == 2
    store_sent(db, sent())
    assert state(db_url) == ("delivered", T0 + dt.timedelta(minutes=3))
    assert early_count(db) == 0


def test_early_reports_are_purged_after_the_setting(db, db_url):
    record(db, report("sent", 1, "OLD"), report("sent", 1, "NEW"))
    db.execute_sql(
        "UPDATE message_status_reports SET received_at = now() - interval '8 days'"
        " WHERE provider_message_id = 'OLD'"
    )
    assert purge_early(db, 7.5) == 1
    rows = query(db_url, "SELECT provider_message_id FROM message_status_reports")
    assert rows == [("NEW",)]


# --- 7. bad input ---------------------------------------------------------------------


def test_a_report_never_touches_another_customers_message(db, db_url):
    other = {"key": "globex", "name": "Globex"}
    store_sent(db, sent("SHARED", customer=other))
    record(db, report("failed", 1, "SHARED"))  # acme's provider, globex's message id
    assert state(db_url, "SHARED") == (None, None)
    assert early_count(db) == 1
    rows = query(
        db_url,
        "SELECT c.key FROM message_status_reports r JOIN providers p ON p.id = r.provider_id "
        "JOIN customers c ON c.id = p.customer_id",
    )
    assert rows == [("acme",)]
