"""Delivery reports through the receiver's real app and the worker (issue 17, points 5 and 7).

Each provider's status webhook, built from the provider's documented fields,
signed as the provider signs: stored as ``message.status``, a duplicate
stored once, a forgery refused; then drained by a real worker run (in this
process) and checked in ``messages`` and ``message_status_reports``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import secrets
import time

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from convdb.queue.worker import WorkerConfig, run
from convdb.testing import query

from ..asgi_support import InProcess
from ..provider_support import basic, twilio_params, twilio_request
from ..serve_support import Sender, add_endpoint
from ..support import fill

TWILIO_TOKEN = "7e1f0c2d3b4a59687f6e5d4c3b2a1908"
MAILGUN_KEY = "key-status-0a1b2c3d4e5f"
POSTMARK_AUTH = ("postmark", "pm-status-pass")
STANDARD_SECRET = "whsec_" + base64.b64encode(b"s" * 32).decode()
BASE = "http://hooks.test"
SENDGRID_PRIVATE = ec.generate_private_key(ec.SECP256R1())
SENDGRID_PUBLIC = base64.b64encode(
    SENDGRID_PRIVATE.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
).decode()


@pytest.fixture
def hooks(db_url, monkeypatch):
    monkeypatch.setenv("TEST_ST_TWILIO", TWILIO_TOKEN)
    monkeypatch.setenv("TEST_ST_MAILGUN", MAILGUN_KEY)
    monkeypatch.setenv("TEST_ST_POSTMARK", ":".join(POSTMARK_AUTH))
    monkeypatch.setenv("TEST_ST_SENDGRID", SENDGRID_PUBLIC)
    monkeypatch.setenv("TEST_ST_STANDARD", STANDARD_SECRET)
    paths = {
        "twilio": add_endpoint(
            db_url, provider_name="twilio", kind="sms", adapter="twilio",
            secret_ref="env:TEST_ST_TWILIO",
        ),
        "mailgun": add_endpoint(
            db_url, provider_name="mailgun", adapter="mailgun", secret_ref="env:TEST_ST_MAILGUN"
        ),
        "postmark": add_endpoint(
            db_url, provider_name="postmark", adapter="postmark",
            secret_ref="env:TEST_ST_POSTMARK",
        ),
        "sendgrid": add_endpoint(
            db_url, provider_name="sendgrid", adapter="sendgrid_events",
            secret_ref="env:TEST_ST_SENDGRID",
        ),
        "standard": add_endpoint(
            db_url, provider_name="inhouse", kind="sms", secret_ref="env:TEST_ST_STANDARD"
        ),
    }  # fmt: skip
    with InProcess(db_url) as app:
        yield {"app": app, "paths": paths, "url": db_url}


def drain(url: str) -> None:
    run(url, config=WorkerConfig(burst=True, progress_interval=0), echo=lambda _: None)


def events(url: str) -> list[tuple]:
    return query(url, "SELECT event_type, payload FROM inbound_events ORDER BY id")


def sent(message_id: str, provider: str, kind: str = "email", customer: str = "acme") -> dict:
    sms = kind == "sms"
    return {
        "customer": {"key": customer, "name": "Acme, Inc."},
        "provider": {"kind": kind, "name": provider},
        "message_id": message_id,
        "from": {"address": "+12125550199" if sms else "support@acme.example"},
        "to": [{"address": "+14155550143" if sms else "jane@example.com"}],
        "body": "Your order shipped",
        "sent_at": "2026-01-05T09:59:00Z",
    }


def status_of(url: str, message_id: str):
    rows = query(url, "SELECT status FROM messages WHERE provider_message_id = %s", (message_id,))
    return rows[0][0] if rows else "no message"


def history(url: str) -> list[tuple]:
    return query(
        url,
        "SELECT provider_message_id, word, status, detail FROM message_status_reports "
        "ORDER BY at, id",
    )


# --- Twilio ----------------------------------------------------------------------------


def twilio_status(sid: str, status: str, error: str | None = None) -> list[tuple[str, str]]:
    """A status callback as Twilio documents it: the customer's number is From."""
    params = [
        ("AccountSid", "AC" + "3c" * 16),
        ("ApiVersion", "2010-04-01"),
        ("From", "+12125550199"),
        ("MessageSid", sid),
        ("MessageStatus", status),
        ("MessagingServiceSid", "MG" + "5e" * 16),
        ("SmsSid", sid),
        ("SmsStatus", status),
        ("To", "+14155550143"),
    ]
    if error is not None:
        params.append(("ErrorCode", error))
    return params


def post_twilio(hooks, params, token=TWILIO_TOKEN):
    path = hooks["paths"]["twilio"]
    body, headers = twilio_request(BASE + path, params, token)
    return hooks["app"].post(path, body, headers)


def test_a_twilio_status_callback_never_becomes_an_inbound_message(hooks):
    """On main, a ``sent`` callback for a message convdb does not hold yet became an
    inbound message with an empty body from the customer's own number."""
    url, sid = hooks["url"], "SM" + "7a" * 16
    answer = post_twilio(hooks, twilio_status(sid, "sent"))
    assert answer.status_code == 200 and b"<Response>" in answer.content
    assert [e[0] for e in events(url)] == ["message.status"]
    drain(url)
    assert query(url, "SELECT count(*) FROM messages") == [(0,)]
    assert query(url, "SELECT count(*) FROM contacts") == [(0,)]
    assert history(url) == [(sid, "sent", "sent", None)]
    fill(url, [sent(sid, "twilio", "sms")], "message.sent")
    drain(url)
    assert status_of(url, sid) == "sent"


def test_twilio_callbacks_in_any_order_end_delivered_and_failures_keep_the_error(hooks):
    url = hooks["url"]
    ok, bad = "SM" + "1b" * 16, "SM" + "2c" * 16
    fill(url, [sent(ok, "twilio", "sms"), sent(bad, "twilio", "sms")], "message.sent")
    drain(url)
    for params in (
        twilio_status(ok, "delivered"),
        twilio_status(ok, "sent"),
        twilio_status(ok, "queued"),
        twilio_status(bad, "undelivered", "30003"),
    ):
        assert post_twilio(hooks, params).status_code == 200
    drain(url)
    assert status_of(url, ok) == "delivered"
    assert status_of(url, bad) == "failed"
    assert (bad, "undelivered", "failed", "30003") in history(url)


def test_a_twilio_duplicate_is_stored_once_and_a_forgery_refused(hooks):
    url, sid = hooks["url"], "SM" + "3d" * 16
    assert post_twilio(hooks, twilio_status(sid, "delivered")).status_code == 200
    assert post_twilio(hooks, twilio_status(sid, "delivered")).status_code == 200
    forged = post_twilio(hooks, twilio_status(sid, "failed", "30007"), token="not-the-token")
    assert forged.status_code == 401
    assert len(events(url)) == 1


def test_an_unknown_twilio_word_goes_into_the_history_and_changes_nothing(hooks):
    url, sid = hooks["url"], "SM" + "4e" * 16
    fill(url, [sent(sid, "twilio", "sms")], "message.sent")
    post_twilio(hooks, twilio_status(sid, "sent"))
    post_twilio(hooks, twilio_status(sid, "teleported"))
    drain(url)
    assert status_of(url, sid) == "sent"
    assert (sid, "teleported", None, "teleported") in history(url)


def test_an_inbound_twilio_message_is_still_an_inbound_message(hooks):
    answer = post_twilio(hooks, twilio_params("sms_new_params.json"))
    assert answer.status_code == 200
    assert [e[0] for e in events(hooks["url"])] == ["message.received"]


# --- Mailgun -----------------------------------------------------------------------------


def mailgun_event(event: str, message_id: str, severity: str | None = None, **extra) -> dict:
    timestamp, token = int(time.time()), secrets.token_hex(25)
    signature = hmac.new(
        MAILGUN_KEY.encode(), f"{timestamp}{token}".encode(), hashlib.sha256
    ).hexdigest()
    data = {
        "id": secrets.token_urlsafe(16),
        "event": event,
        "timestamp": time.time(),
        "recipient": "jane@example.com",
        "message": {"headers": {"message-id": message_id}},
        **extra,
    }
    if severity:
        data["severity"] = severity
        data["delivery-status"] = {"code": 550, "description": "No such mailbox"}
    return {"signature": {"timestamp": str(timestamp), "token": token, "signature": signature},
            "event-data": data}  # fmt: skip


def post_json(hooks, name, doc, headers=None):
    body = json.dumps(doc).encode()
    return hooks["app"].post(
        hooks["paths"][name], body, {"content-type": "application/json", **(headers or {})}
    )


def test_mailgun_events_with_or_without_angle_brackets(hooks):
    url = hooks["url"]
    fill(
        url,
        [sent("<a1@mg.acme.example>", "mailgun"), sent("b2@mg.acme.example", "mailgun")],
        "message.sent",
    )
    drain(url)
    for doc in (
        mailgun_event("delivered", "a1@mg.acme.example"),
        mailgun_event("opened", "<a1@mg.acme.example>"),
        mailgun_event("failed", "b2@mg.acme.example", "temporary"),
    ):
        assert post_json(hooks, "mailgun", doc).status_code == 200
    drain(url)
    assert status_of(url, "<a1@mg.acme.example>") == "read"
    assert status_of(url, "b2@mg.acme.example") is None  # a temporary failure: history only
    assert ("b2@mg.acme.example", "failed:temporary", None, "550") in history(url)
    doc = mailgun_event("failed", "b2@mg.acme.example", "permanent")
    assert post_json(hooks, "mailgun", doc).status_code == 200
    assert post_json(hooks, "mailgun", doc).status_code == 200  # a redelivery, stored once
    replayed = {**doc, "event-data": {**doc["event-data"], "id": "another-event"}}
    assert post_json(hooks, "mailgun", replayed).status_code == 401  # its token is spent
    drain(url)
    assert status_of(url, "b2@mg.acme.example") == "failed"


def test_mailgun_events_forged_or_unsigned_are_refused(hooks):
    doc = mailgun_event("delivered", "x@mg.acme.example")
    doc["signature"]["signature"] = "0" * 64
    assert post_json(hooks, "mailgun", doc).status_code == 401
    del doc["signature"]
    assert post_json(hooks, "mailgun", doc).status_code == 401
    assert events(hooks["url"]) == []


def test_a_redelivered_mailgun_event_is_stored_once(hooks):
    doc = mailgun_event("delivered", "y@mg.acme.example")
    assert post_json(hooks, "mailgun", doc).status_code == 200
    doc2 = mailgun_event("delivered", "y@mg.acme.example")
    doc2["event-data"] = doc["event-data"]  # the same event, signed again (a retry)
    assert post_json(hooks, "mailgun", doc2).status_code == 200
    assert len(events(hooks["url"])) == 1


# --- Postmark ----------------------------------------------------------------------------


def postmark_hook(record: str, message_id: str, **fields) -> dict:
    now = dt.datetime.now(dt.UTC).isoformat()
    doc = {"RecordType": record, "MessageID": message_id, "MessageStream": "outbound",
           "Recipient": "jane@example.com", "Metadata": {}}  # fmt: skip
    if record == "Delivery":
        doc.update(DeliveredAt=now, Details="Test delivery webhook details")
    elif record == "Bounce":
        doc.update(ID=fields.pop("ID", 4323372036854775807), BouncedAt=now,
                   Description="The server was unable to deliver your message")  # fmt: skip
    else:
        doc.update(ReceivedAt=now)
    doc.update(fields)
    return doc


def test_postmark_delivery_bounces_and_opens(hooks):
    url, auth = hooks["url"], basic(*POSTMARK_AUTH)
    ids = ["pm-hard", "pm-soft", "pm-open", "pm-spam"]
    fill(url, [sent(i, "postmark") for i in ids], "message.sent")
    drain(url)
    for doc in (
        postmark_hook("Delivery", "pm-hard"),
        postmark_hook("Bounce", "pm-hard", Type="HardBounce", ID=1),
        postmark_hook("Bounce", "pm-soft", Type="SoftBounce", ID=2),
        postmark_hook("Bounce", "pm-soft", Type="Transient", ID=3),
        postmark_hook("Delivery", "pm-open"),
        postmark_hook("Open", "pm-open"),
        postmark_hook("SpamComplaint", "pm-spam", Type="SpamComplaint", ID=4),
    ):
        assert post_json(hooks, "postmark", doc, auth).status_code == 200
    drain(url)
    assert [status_of(url, i) for i in ids] == ["failed", None, "read", None]
    words = {(r[0], r[1], r[2]) for r in history(url)}
    assert {("pm-soft", "SoftBounce", None), ("pm-soft", "Transient", None)} <= words
    assert ("pm-spam", "SpamComplaint", None) in words


def test_postmark_status_webhooks_need_the_credentials(hooks):
    doc = postmark_hook("Delivery", "pm-x")
    assert post_json(hooks, "postmark", doc, basic("postmark", "wrong")).status_code == 401
    assert post_json(hooks, "postmark", doc).status_code == 401
    assert events(hooks["url"]) == []


# --- SendGrid ----------------------------------------------------------------------------


def sendgrid_event(event: str, message: str, n: int, **extra) -> dict:
    return {
        "email": "jane@example.com",
        "timestamp": int(time.time()) - 60 + n,
        "event": event,
        "sg_event_id": f"sg-{message}-{event}-{n}",
        "sg_message_id": f"{message}.filterdrecv-5bd8f7c5c4-abcde-1-6543210A-1.0",
        "smtp-id": f"<{message}@ismtpd0001p1las1.sendgrid.net>",
        **extra,
    }


def sendgrid_request(doc, private=SENDGRID_PRIVATE) -> tuple[bytes, dict]:
    body = json.dumps(doc).encode() if not isinstance(doc, bytes) else doc
    timestamp = str(int(time.time()))
    signature = private.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return body, {
        "content-type": "application/json",
        "x-twilio-email-event-webhook-signature": base64.b64encode(signature).decode(),
        "x-twilio-email-event-webhook-timestamp": timestamp,
    }


def post_sendgrid(hooks, doc, **kwargs):
    body, headers = sendgrid_request(doc, **kwargs)
    return hooks["app"].post(hooks["paths"]["sendgrid"], body, headers)


def test_a_sendgrid_batch_becomes_one_event_each_and_a_bad_event_is_refused_alone(hooks):
    url = hooks["url"]
    fill(url, [sent("msgA", "sendgrid"), sent("msgB", "sendgrid")], "message.sent")
    drain(url)
    batch = [
        sendgrid_event("processed", "msgA", 0),
        sendgrid_event("delivered", "msgA", 1),
        {"event": "delivered", "timestamp": 1, "sg_message_id": "msgB.x"},  # no sg_event_id
        sendgrid_event("deferred", "msgB", 2, response="400 try again later"),
        sendgrid_event("bounce", "msgB", 3, reason="550 5.1.1 unknown user", type="bounce"),
        sendgrid_event("open", "msgA", 4),
        sendgrid_event("delivered", "msgB", 5, timestamp="yesterday"),
    ]
    answer = post_sendgrid(hooks, batch)
    assert answer.status_code == 200
    body = answer.json()
    assert body["stored"] == 5
    assert [(r["index"], r["error"]) for r in body["refused"]] == [
        (2, "bad_event"),
        (6, "bad_event"),
    ]
    assert post_sendgrid(hooks, batch).json()["duplicate"] == 5  # a retry: stored once
    # five reports and two records of refusals, each once
    assert [e[0] for e in events(url)].count("message.status") == 7
    drain(url)
    assert status_of(url, "msgA") == "read"
    assert status_of(url, "msgB") == "failed"
    assert ("msgB", "deferred", None, "400 try again later") not in history(url)
    assert any(r[1] == "deferred" and r[2] is None for r in history(url))
    refusals = [r for r in history(url) if r[1] == "refused"]  # recorded once, per event
    assert sorted(r[3] for r in refusals) == [
        "bad_event: sg_event_id is missing or not a string",
        "bad_event: timestamp is not Unix seconds",
    ]
    assert {r[0] for r in refusals} == {"msgB"} and {r[2] for r in refusals} == {None}


def test_a_refused_sendgrid_event_of_an_unknown_message_leaves_nothing(hooks):
    url = hooks["url"]
    bad = sendgrid_event("delivered", "nobody", 0, timestamp=-5)
    answer = post_sendgrid(hooks, [bad, sendgrid_event("processed", "nobody", 1)])
    assert answer.json()["refused"][0]["index"] == 0
    drain(url)
    assert history(url) == [("nobody", "processed", "queued", None)]  # early, kept


def test_sendgrid_refuses_a_forged_batch_and_a_body_that_is_not_an_array(hooks):
    other = ec.generate_private_key(ec.SECP256R1())
    doc = [sendgrid_event("delivered", "msgC", 0)]
    assert post_sendgrid(hooks, doc, private=other).status_code == 401
    assert post_sendgrid(hooks, {"not": "an array"}).status_code == 400
    assert post_sendgrid(hooks, [1, 2]).status_code == 400
    assert events(hooks["url"]) == []


def test_ten_thousand_sendgrid_events_fit_in_one_request(hooks):
    batch = [sendgrid_event("delivered", f"m{i}", i % 50) for i in range(10_000)]
    answer = post_sendgrid(hooks, batch)
    assert answer.status_code == 200 and answer.json()["stored"] == 10_000
    assert query(hooks["url"], "SELECT count(*) FROM inbound_events") == [(10_000,)]
    too_many = post_sendgrid(hooks, batch + batch[:1])
    assert too_many.status_code == 413


# --- Standard Webhooks ---------------------------------------------------------------------


def test_standard_webhooks_message_status(hooks):
    url = hooks["url"]
    sender = Sender(hooks["paths"]["standard"], STANDARD_SECRET)
    fill(url, [sent("in-1", "inhouse", "sms")], "message.sent")
    drain(url)
    report = {
        "provider": {"kind": "sms", "name": "inhouse"},
        "message_id": "in-1",
        "status": "delivered",
        "at": "2026-01-05T10:00:00+01:00",
    }
    body, headers = sender.request(report, event_type="message.status")
    assert hooks["app"].post(sender.path, body, headers).status_code == 200
    bad = {**report, "status": "bounced"}
    body, headers = sender.request(bad, event_type="message.status")
    answer = hooks["app"].post(sender.path, body, headers)
    assert answer.status_code == 400 and "status" in answer.json()["detail"]
    other = {**report, "customer": {"key": "globex"}}
    body, headers = sender.request(other, event_type="message.status")
    assert hooks["app"].post(sender.path, body, headers).status_code == 400
    drain(url)
    assert status_of(url, "in-1") == "delivered"


def test_a_report_at_one_customers_endpoint_never_touches_anothers_message(hooks):
    """globex holds a message with the same Twilio id, on its own provider and account."""
    url, sid = hooks["url"], "SM" + "9f" * 16
    fill(url, [sent(sid, "twilio", "sms", customer="globex")], "message.sent")
    drain(url)
    post_twilio(hooks, twilio_status(sid, "failed", "30008"))
    drain(url)
    assert status_of(url, sid) is None
    assert query(url, "SELECT count(*) FROM message_status_reports WHERE message_id IS NULL") == [
        (1,)
    ]


def test_a_redelivered_postmark_webhook_is_stored_once(hooks):
    auth = basic(*POSTMARK_AUTH)
    delivery = postmark_hook("Delivery", "pm-twice")
    bounce = postmark_hook("Bounce", "pm-twice", Type="HardBounce", ID=77)
    for doc in (delivery, delivery, bounce, bounce):
        assert post_json(hooks, "postmark", doc, auth).status_code == 200
    assert len(events(hooks["url"])) == 2
