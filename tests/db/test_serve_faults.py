"""Inputs that can never succeed get their 4xx or are repaired, and curable faults get 503
(issue 16, items 5 and 6): no request is answered 500 or writes a traceback.

The receiver's real app runs in this process (``tests/asgi_support.py``) on a real
database; each provider's endpoint is registered as ``convdb providers add`` does.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import quote_plus

import pytest

from convdb.testing import query

from ..asgi_support import InProcess
from ..provider_support import (
    basic,
    fixture,
    mailgun_form,
    mailgun_multipart,
    mailgun_signature,
    multipart_headers,
)
from ..serve_support import add_endpoint

MAILGUN_KEY = "key-0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f"
POSTMARK_AUTH = ("postmark", "pm-Inbound-pass")


@pytest.fixture
def receiver(db_url, monkeypatch, tmp_path, caplog):
    """Endpoints of every email adapter (SendGrid's by path token alone), the app, and
    the log records of the requests (no test may see a traceback)."""
    monkeypatch.setenv("TEST_MAILGUN_KEY", MAILGUN_KEY)
    monkeypatch.setenv("TEST_POSTMARK_AUTH", ":".join(POSTMARK_AUTH))
    store = tmp_path / "attachments"
    monkeypatch.setenv("CONVDB_ATTACHMENT_DIR", str(store))
    paths = {}
    paths["mailgun"] = add_endpoint(
        db_url, provider_name="mailgun", adapter="mailgun", secret_ref="env:TEST_MAILGUN_KEY"
    )
    paths["postmark"] = add_endpoint(
        db_url, provider_name="postmark", adapter="postmark", secret_ref="env:TEST_POSTMARK_AUTH"
    )
    paths["sendgrid"] = add_endpoint(
        db_url, provider_name="sendgrid", adapter="sendgrid", secret_ref="none:"
    )
    paths["unset"] = add_endpoint(
        db_url, provider_name="unset", adapter="mailgun", secret_ref="env:TEST_NOT_SET_ANYWHERE"
    )
    caplog.set_level(logging.INFO, logger="convdb")
    with InProcess(db_url) as app:
        yield {"app": app, "paths": paths, "url": db_url, "store": store, "log": caplog}
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert tracebacks == [], "a request wrote a traceback"


def stored(url: str) -> list[dict]:
    return [r[0] for r in query(url, "SELECT payload FROM inbound_events ORDER BY id")]


def postmark(**changes) -> bytes:
    doc = json.loads(fixture("postmark", "thread_reply.json"))
    doc.update(changes)
    return json.dumps(doc).encode()


# --- inputs that can never succeed: their 4xx, or repaired ---------------------------


def test_a_raw_non_ascii_authorization_header_at_postmark_gets_401(receiver):
    app, path = receiver["app"], receiver["paths"]["postmark"]
    headers = {"content-type": "application/json", "authorization": b"Basic \xe9t\xe9\xff=="}
    answer = app.post(path, postmark(), headers)
    assert (answer.status_code, answer.json()["error"]) == (401, "missing_credentials")
    assert stored(receiver["url"]) == []


def test_a_multipart_part_with_charset_base64_at_mailgun_gets_401_before_authentication(
    receiver,
):
    app, path = receiver["app"], receiver["paths"]["mailgun"]
    body = (
        b'--b\r\nContent-Disposition: form-data; name="timestamp"\r\n'
        b"Content-Type: text/plain; charset=base64\r\n\r\nMTcwMDAwMDAwMA==\r\n"
        b'--b\r\nContent-Disposition: form-data; name="token"\r\n'
        b"Content-Type: text/plain; charset=zlib\r\n\r\nx\x9c\xff\r\n"
        b'--b\r\nContent-Disposition: form-data; name="signature"\r\n\r\nabc\r\n--b--\r\n'
    )
    answer = app.post(path, body, {"content-type": "multipart/form-data; boundary=b"})
    assert answer.status_code == 401
    assert answer.json()["error"] in ("bad_timestamp", "bad_signature")


@pytest.mark.parametrize("charset", ["rot13", "base64", "hex", "zlib", "idna"])
def test_sendgrid_charsets_naming_no_text_encoding_read_as_utf8(receiver, charset):
    app, path = receiver["app"], receiver["paths"]["sendgrid"]
    body = fixture("sendgrid", "long_thread_reply.multipart").replace(
        b'"text": "utf-8"', f'"text": "{charset}", "subject": "{charset}"'.encode()
    )
    body = body.replace(b"thread-30.cafe", f"thread-30-{charset}".encode())
    answer = app.post(path, body, multipart_headers(body))
    assert (answer.status_code, answer.json()) == (200, {"status": "stored"})
    [event] = stored(receiver["url"])
    assert "On day 29, someone wrote: still waiting" in event["body"]
    assert event["subject"] == "Re: Re: Re: order 1142"


def test_a_date_in_year_9999_with_a_negative_offset_falls_back_to_the_receipt_time(receiver):
    app, paths = receiver["app"], receiver["paths"]
    date = "Fri, 31 Dec 9999 23:30:00 -0500"
    body, headers = mailgun_form("thread_reply.form", MAILGUN_KEY)
    body = body.replace(b"Sun%2C+9+Nov+2025+08%3A30%3A00+%2B0000", quote_plus(date).encode())
    assert b"9999" in body
    answers = [
        app.post(paths["mailgun"], body, headers),
        app.post(
            paths["postmark"],
            postmark(Date=date),
            {"content-type": "application/json", **basic(*POSTMARK_AUTH)},
        ),
    ]
    assert [a.status_code for a in answers] == [200, 200]
    events = stored(receiver["url"])
    assert len(events) == 2
    for event in events:
        assert event["sent_at"][:13] == event["received_at"][:13]
        assert event["sent_at"].startswith("20")


# --- curable faults: 503 with Retry-After, logged once --------------------------------


def test_a_secret_that_cannot_be_read_gets_503_with_retry_after_logged_once(receiver):
    app, path, log = receiver["app"], receiver["paths"]["unset"], receiver["log"]
    answers = [app.post(path, *mailgun_form("thread_reply.form", MAILGUN_KEY)) for _ in range(3)]
    assert [(a.status_code, a.headers.get("retry-after")) for a in answers] == [(503, "5")] * 3
    assert answers[0].json()["error"] == "secret_unavailable"
    said = [r.getMessage() for r in log.records if "TEST_NOT_SET_ANYWHERE" in r.getMessage()]
    assert len(said) == 1 and "not set" in said[0]
    assert stored(receiver["url"]) == []


def test_an_attachment_store_that_cannot_be_written(receiver):
    """A forged request gets 401 (authentication first), an authentic one 503 with
    Retry-After at each email adapter, /healthz reports the store; once the store is
    back, the retry is stored."""
    app, paths, store = receiver["app"], receiver["paths"], receiver["store"]
    store.parent.mkdir(parents=True, exist_ok=True)
    store.write_bytes(b"")  # a file where the folder should be: not writable, even as root
    forged = mailgun_multipart("attachments.multipart", "key-not-the-right-one")
    authentic = mailgun_multipart("attachments.multipart", MAILGUN_KEY)
    sendgrid = fixture("sendgrid", "latin1_attachments.multipart")
    with_file = postmark(
        Attachments=[{"Name": "a.txt", "Content": "aGVsbG8=", "ContentType": "text/plain"}]
    )
    answers = {
        "mailgun forged": app.post(paths["mailgun"], *forged),
        "mailgun": app.post(paths["mailgun"], *authentic),
        "sendgrid": app.post(paths["sendgrid"], sendgrid, multipart_headers(sendgrid)),
        "postmark": app.post(
            paths["postmark"],
            with_file,
            {"content-type": "application/json", **basic(*POSTMARK_AUTH)},
        ),
        "postmark forged": app.post(
            paths["postmark"],
            with_file,
            {"content-type": "application/json", **basic("postmark", "guess")},
        ),
    }
    codes = {name: (a.status_code, a.headers.get("retry-after")) for name, a in answers.items()}
    assert codes == {
        "mailgun forged": (401, None),
        "mailgun": (503, "5"),
        "sendgrid": (503, "5"),
        "postmark": (503, "5"),
        "postmark forged": (401, None),
    }
    assert answers["mailgun"].json()["error"] == "attachment_store_unavailable"
    health = app.get("/healthz")
    assert health.status_code == 200
    assert health.json() == {
        "status": "degraded",
        "database": "ok",
        "attachment_store": "unavailable",
    }
    assert stored(receiver["url"]) == []
    store.unlink()
    assert app.get("/healthz").json()["attachment_store"] == "ok"
    again = mailgun_multipart("attachments.multipart", MAILGUN_KEY)
    assert app.post(paths["mailgun"], *again).status_code == 200
    assert len(stored(receiver["url"])) == 1


def test_an_adapter_that_is_not_installed_gets_503(db_url):
    path = add_endpoint(db_url, provider_name="gone", adapter="mailgun", secret_ref="env:X")
    query(db_url, "UPDATE webhook_endpoints SET adapter = 'not_installed'")
    with InProcess(db_url) as app:
        answer = app.post(path, b"{}", {"content-type": "application/json"})
    assert (answer.status_code, answer.headers.get("retry-after")) == (503, "5")
    assert answer.json()["error"] == "adapter_missing"


def test_signature_fields_first_a_forged_form_is_refused_before_it_is_decoded(receiver):
    """Mailgun's form-encoded signature covers only timestamp and token: a forged body
    whose other fields cannot even be decoded gets 401, not a parse error."""
    app, path = receiver["app"], receiver["paths"]["mailgun"]
    signed = mailgun_signature("key-not-the-right-one")
    body = b"body-plain=%FF%FE&" + "&".join(f"{k}={v}" for k, v in signed).encode()
    answer = app.post(path, body, {"content-type": "application/x-www-form-urlencoded"})
    assert (answer.status_code, answer.json()["error"]) == (401, "bad_signature")
    # the signed fields as found in the bytes must be those the form decodes to
    ambiguous = "t%69mestamp=1&" + "&".join(f"{k}={v}" for k, v in mailgun_signature(MAILGUN_KEY))
    answer = app.post(
        path, ambiguous.encode(), {"content-type": "application/x-www-form-urlencoded"}
    )
    assert (answer.status_code, answer.json()["error"]) == (401, "bad_signature")


def test_a_form_encoded_body_over_the_form_limit_gets_413_unread(db_url, monkeypatch):
    monkeypatch.setenv("TEST_MAILGUN_KEY", MAILGUN_KEY)
    path = add_endpoint(db_url, adapter="mailgun", secret_ref="env:TEST_MAILGUN_KEY")
    with InProcess(db_url, max_form_body=64 * 1024) as app:
        body = b"body-plain=" + b"x" * (64 * 1024)
        answer = app.post(path, body, {"content-type": "application/x-www-form-urlencoded"})
    assert (answer.status_code, answer.json()["error"]) == (413, "too_large")
    assert answer.headers["connection"] == "close"
