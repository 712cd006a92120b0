"""Provider adapters through a real ``convdb serve`` process, a real client and the worker.

One server for the module, behind a (pretend) TLS proxy: ``CONVDB_PUBLIC_URL``
is ``https://hooks.example.com``, so Twilio's signatures cover that URL, not
the local one. Each provider has an endpoint; requests come from the
fixtures in ``tests/fixtures/providers``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from twilio.request_validator import RequestValidator

from convdb.attachments import digest_of
from convdb.testing import query, scalar

from ..provider_support import (
    basic,
    fixture,
    mailgun_form,
    mailgun_multipart,
    multipart_headers,
    twilio_params,
    twilio_request,
)
from ..serve_support import ServeProcess, add_endpoint
from ..support import run_cli

pytestmark = pytest.mark.slow

PUBLIC = "https://hooks.example.com"
TWILIO_TOKEN = "9f2c1e0d8b7a6f5e4d3c2b1a0f9e8d7c"
MAILGUN_KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"
SENDGRID_AUTH = ("parse", "s3cret-Parse")
POSTMARK_AUTH = ("postmark", "pm-Inbound-pass")
MAX_ATTACHMENT = 64 * 1024


@pytest.fixture(scope="module")
def hooks(server, template_db, tmp_path_factory):
    name = server.create(template=template_db)
    url = server.url(name)
    store = tmp_path_factory.mktemp("attachments")
    paths = {
        "twilio": add_endpoint(
            url,
            provider_name="twilio",
            kind="sms",
            adapter="twilio",
            secret_ref="env:TEST_TWILIO_TOKEN",
        ),
        "sendgrid": add_endpoint(
            url, provider_name="sendgrid", adapter="sendgrid", secret_ref="env:TEST_SENDGRID_AUTH"
        ),
        "sendgrid-token": add_endpoint(
            url, "initech", "sendgrid-open", adapter="sendgrid", secret_ref="none:"
        ),
        "mailgun": add_endpoint(
            url, provider_name="mailgun", adapter="mailgun", secret_ref="env:TEST_MAILGUN_KEY"
        ),
        "postmark": add_endpoint(
            url, provider_name="postmark", adapter="postmark", secret_ref="env:TEST_POSTMARK_AUTH"
        ),
        "standard-none": add_endpoint(url, provider_name="inhouse", secret_ref="none:"),
    }
    env = {
        "TEST_TWILIO_TOKEN": TWILIO_TOKEN,
        "TEST_MAILGUN_KEY": MAILGUN_KEY,
        "TEST_SENDGRID_AUTH": ":".join(SENDGRID_AUTH),
        "TEST_POSTMARK_AUTH": ":".join(POSTMARK_AUTH),
        "CONVDB_PUBLIC_URL": PUBLIC,
        "CONVDB_ATTACHMENT_DIR": str(store),
        "CONVDB_ATTACHMENT_MAX_BYTES": str(MAX_ATTACHMENT),
    }
    proc = ServeProcess(url, env=env)
    try:
        with proc.client() as client:
            yield {"url": url, "proc": proc, "client": client, "paths": paths, "store": store}
    finally:
        proc.kill()
        server.drop(name)


def events(url: str, key_like: str) -> list[tuple]:
    return query(
        url,
        "SELECT idempotency_key, payload FROM inbound_events WHERE idempotency_key LIKE %s "
        "ORDER BY id",
        (key_like,),
    )


def stored_files(store: Path) -> list[Path]:
    return sorted(p for p in (store / "sha256").rglob("*") if p.is_file()) if store.exists() else []


def leftovers(store: Path) -> list[Path]:
    return list((store / "tmp").iterdir()) if (store / "tmp").exists() else []


# --- Twilio --------------------------------------------------------------------------


def test_twilio_signatures_verify_as_twilio_python_computes_them(hooks):
    """(a) Every fixture signed over the public URL, with and without :443, and with
    parameters Twilio added later, is accepted; twilio-python's validator agrees."""
    path, client = hooks["paths"]["twilio"], hooks["client"]
    answers = []
    for name, url in (
        ("sms_unicode.json", PUBLIC + path),
        ("mms_three_media.json", "https://hooks.example.com:443" + path),
        ("sms_new_params.json", PUBLIC + path),
    ):
        params = twilio_params(name)
        body, headers = twilio_request(url, params, TWILIO_TOKEN)
        assert RequestValidator(TWILIO_TOKEN).validate(
            PUBLIC + path, dict(params), headers["x-twilio-signature"]
        )
        answers.append(client.post(path, content=body, headers=headers))
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert all(a.headers["content-type"].startswith("text/xml") for a in answers)
    assert b"<Response>" in answers[0].content
    rows = events(hooks["url"], "%:SM%") + events(hooks["url"], "%:MM%")
    assert {r[1]["message_id"] for r in rows} >= {
        "SM" + "a1" * 16,
        "SM" + "d4" * 16,
        "MM" + "b2" * 16,
    }
    mms = next(r[1] for r in rows if r[1]["message_id"].startswith("MM"))
    assert [a["content_type"] for a in mms["attachments"]] == [
        "image/jpeg",
        "image/png",
        "video/mp4",
    ]
    assert all(a["url"].startswith("https://api.twilio.com/") for a in mms["attachments"])
    assert mms["customer"]["key"] == "acme" and mms["provider"] == {"kind": "sms", "name": "twilio"}


def test_twilio_duplicate_delivery_is_stored_once(hooks):
    """(b) Twilio retrying the same MessageSid gets 200 and one row."""
    path, client = hooks["paths"]["twilio"], hooks["client"]
    params = [(k, v.replace("a1a1", "e5e5")) for k, v in twilio_params("sms_unicode.json")]
    body, headers = twilio_request(PUBLIC + path, params, TWILIO_TOKEN)
    first = client.post(path, content=body, headers=headers)
    again = client.post(path, content=body, headers=headers)
    assert (first.status_code, again.status_code) == (200, 200)
    assert len(events(hooks["url"], "%SMe5e5%")) == 1


def test_twilio_forged_requests_are_refused_and_nothing_is_stored(hooks):
    """(c) Wrong token, a changed parameter, an unsigned added parameter, another URL,
    no signature: 401 each, nothing stored."""
    path, client = hooks["paths"]["twilio"], hooks["client"]
    params = [(k, v.replace("a1a1", "f6f6")) for k, v in twilio_params("sms_unicode.json")]
    body, headers = twilio_request(PUBLIC + path, params, TWILIO_TOKEN)
    wrong_token = twilio_request(PUBLIC + path, params, "0" * 32)
    other_url = twilio_request("https://evil.example.com" + path, params, TWILIO_TOKEN)
    tampered = body.replace(b"Hola", b"Pay+me")
    answers = [
        client.post(path, content=wrong_token[0], headers=wrong_token[1]),
        client.post(path, content=other_url[0], headers=other_url[1]),
        client.post(path, content=tampered, headers=headers),
        client.post(path, content=body + b"&Extra=1", headers=headers),
        client.post(path, content=body, headers={"content-type": headers["content-type"]}),
    ]
    assert [a.status_code for a in answers] == [401] * 5
    assert answers[-1].json()["error"] == "missing_signature"
    assert events(hooks["url"], "%SMf6f6%") == []
    assert "401 rejected bad_signature endpoint=acme/twilio" in hooks["proc"].output
    assert TWILIO_TOKEN not in hooks["proc"].output


def test_twilio_customer_found_through_the_to_numbers_mapping(hooks):
    """A number mapped to another customer under the same Twilio account (secret
    reference) routes the message there; a mapping under another account does not."""
    url, path, client = hooks["url"], hooks["paths"]["twilio"], hooks["client"]
    query(
        url,
        """
        WITH c AS (INSERT INTO customers (key, name) VALUES ('globex', 'Globex') RETURNING id),
             p AS (INSERT INTO providers (customer_id, kind, name, credentials_ref)
                   SELECT id, 'sms', 'globex-twilio', 'env:TEST_TWILIO_TOKEN' FROM c RETURNING id,
                   customer_id),
             o AS (INSERT INTO customers (key, name) VALUES ('other', 'Other') RETURNING id),
             q AS (INSERT INTO providers (customer_id, kind, name, credentials_ref)
                   SELECT id, 'sms', 'other-twilio', 'env:SOMEONE_ELSE' FROM o RETURNING id,
                   customer_id)
        INSERT INTO endpoint_mappings (customer_id, provider_id, kind, address, normalized, hash)
        SELECT customer_id, id, 'sms', '+1 212 555 0111', '+12125550111',
               convdb_hash_v1('+12125550111') FROM p
        UNION ALL
        SELECT customer_id, id, 'sms', '+1 212 555 0122', '+12125550122',
               convdb_hash_v1('+12125550122') FROM q
        """,
    )
    sent = {}
    for number, sid in (("+12125550111", "SM" + "77" * 16), ("+12125550122", "SM" + "88" * 16)):
        params = [
            (k, {"To": number, "MessageSid": sid}.get(k, v))
            for k, v in twilio_params("sms_unicode.json")
        ]
        body, headers = twilio_request(PUBLIC + path, params, TWILIO_TOKEN)
        assert client.post(path, content=body, headers=headers).status_code == 200
        sent[number] = events(url, f"%{sid}")[0][1]
    assert sent["+12125550111"]["customer"] == {"key": "globex", "name": "Globex"}
    assert sent["+12125550111"]["provider"] == {"kind": "sms", "name": "globex-twilio"}
    assert sent["+12125550122"]["customer"]["key"] == "acme"  # another account's mapping


# --- SendGrid ------------------------------------------------------------------------


def _sendgrid(name: str, *, auth=SENDGRID_AUTH, replace: tuple[bytes, bytes] | None = None):
    body = fixture("sendgrid", name)
    if replace:
        body = body.replace(*replace)
    return body, multipart_headers(body, **(basic(*auth) if auth else {}))


def test_sendgrid_basic_auth_and_the_path_token_alone(hooks):
    """(a) Basic auth as configured is accepted; an endpoint whose secret reference is
    ``none:`` takes the path token alone; a ``none:`` endpoint of an adapter that needs
    a secret never accepts anything."""
    paths, client = hooks["paths"], hooks["client"]
    body, headers = _sendgrid("shift_jis_no_message_id.multipart")
    accepted = client.post(paths["sendgrid"], content=body, headers=headers)
    open_body, open_headers = _sendgrid("long_thread_reply.multipart", auth=None)
    token_only = client.post(paths["sendgrid-token"], content=open_body, headers=open_headers)
    standard = client.post(
        paths["standard-none"], content=b"{}", headers={"content-type": "application/json"}
    )
    assert (accepted.status_code, token_only.status_code) == (200, 200)
    assert standard.status_code in (401, 500)
    rows = events(hooks["url"], "%sha256:%")
    assert any(r[1]["body"].startswith("お世話になっております") for r in rows)
    initech = events(hooks["url"], "%thread-30.cafe%")
    assert [r[1]["customer"]["key"] for r in initech] == ["initech"]


def test_sendgrid_duplicate_delivery_is_stored_once(hooks):
    """(b) SendGrid retries with a new multipart boundary; the Message-ID makes it one."""
    client, path = hooks["client"], hooks["paths"]["sendgrid"]
    body, headers = _sendgrid("latin1_attachments.multipart")
    first = client.post(path, content=body, headers=headers)
    rebound = body.replace(b"xYzZY", b"AbCdE")
    again = client.post(
        path, content=rebound, headers=multipart_headers(rebound, **basic(*SENDGRID_AUTH))
    )
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json() == {"status": "duplicate"}
    assert len(events(hooks["url"], "%20251105090001.4711@mail.example.de")) == 1


def test_sendgrid_raw_mime_mode(hooks):
    """ "POST the raw, full MIME message": the text, the subject, the sender and
    the attachment come from ``email`` (an ISO-8859-1 quoted-printable part, a
    base64 PNG); the Message-ID is the key; a redelivery is stored once."""
    client, path, store = hooks["client"], hooks["paths"]["sendgrid"], hooks["store"]
    body, headers = _sendgrid("raw_mime.multipart")
    first = client.post(path, content=body, headers=headers)
    again = client.post(path, content=body, headers=headers)
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json() == {"status": "duplicate"}
    [(key, event)] = events(hooks["url"], "%raw-mime-1@mail.example.fr")
    assert key.endswith(":mid:raw-mime-1@mail.example.fr")
    assert event["body"].startswith("Bonjour, voilà le reçu. Déjà payé.")
    assert event["subject"] == "Reçu : facture"
    assert event["from"]["address"] == "andre@example.fr"
    assert event["from"]["name"] == "André François"
    [attachment] = event["attachments"]
    assert (attachment["content_type"], attachment["filename"]) == ("image/png", "recu.png")
    digest = digest_of(attachment["url"])
    data = (store / "sha256" / digest[:2] / digest[2:4] / digest).read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) == attachment["size"]


def test_sendgrid_forged_requests_are_refused_and_nothing_is_stored(hooks):
    """(c) Wrong or missing credentials: 401 before the body is read; nothing in the
    queue, no attachment bytes in the store."""
    client, path, store = hooks["client"], hooks["paths"]["sendgrid"], hooks["store"]
    before = stored_files(store)
    forged = _sendgrid(
        "latin1_attachments.multipart",
        auth=("parse", "guess"),
        replace=(b"4711@mail", b"6666@mail"),
    )
    missing = _sendgrid(
        "latin1_attachments.multipart", auth=None, replace=(b"4711@mail", b"6666@mail")
    )
    answers = [client.post(path, content=b, headers=h) for b, h in (forged, missing)]
    assert [a.status_code for a in answers] == [401, 401]
    assert [a.json()["error"] for a in answers] == ["bad_credentials", "missing_credentials"]
    assert events(hooks["url"], "%6666@mail%") == []
    assert stored_files(store) == before and leftovers(store) == []


def test_an_attachment_over_the_limit_gets_413_and_leaves_nothing(hooks):
    client, path, store = hooks["client"], hooks["paths"]["sendgrid"], hooks["store"]
    before = stored_files(store)
    big = bytes(range(256)) * (MAX_ATTACHMENT // 256 + 1)
    body = fixture("sendgrid", "latin1_attachments.multipart").replace(b"4711@mail", b"4242@mail")
    marker = b"%PDF-1.4\n"
    body = body.replace(marker, marker + big)
    answer = client.post(
        path, content=body, headers=multipart_headers(body, **basic(*SENDGRID_AUTH))
    )
    assert answer.status_code == 413 and "over" in answer.json()["detail"]
    assert events(hooks["url"], "%4242@mail%") == []
    assert stored_files(store) == before and leftovers(store) == []


# --- Mailgun -------------------------------------------------------------------------


def test_mailgun_signatures_verify_form_and_multipart(hooks):
    """(a) Both of Mailgun's encodings, signed with the signing key, are accepted."""
    client, path = hooks["client"], hooks["paths"]["mailgun"]
    answers = [
        client.post(path, content=b, headers=h)
        for b, h in (
            mailgun_multipart("attachments.multipart", MAILGUN_KEY),
            mailgun_form("thread_reply.form", MAILGUN_KEY),
        )
    ]
    assert [a.status_code for a in answers] == [200, 200]
    rows = events(hooks["url"], "%mail.example.se")
    assert len(rows) == 2


def test_mailgun_duplicate_delivery_is_stored_once(hooks):
    """(b) The same request again (same token) and a retry signed afresh (new token):
    both 200, one row."""
    client, path = hooks["client"], hooks["paths"]["mailgun"]
    body, headers = mailgun_form("thread_reply.form", MAILGUN_KEY, token="a" * 50)
    retry, _ = mailgun_form("thread_reply.form", MAILGUN_KEY, token="b" * 50)
    body, retry = (b.replace(b"fedcba", b"dup001") for b in (body, retry))
    answers = [client.post(path, content=b, headers=headers) for b in (body, body, retry)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert [a.json()["status"] for a in answers] == ["stored", "duplicate", "duplicate"]
    assert len(events(hooks["url"], "%dup001%")) == 1


def test_mailgun_forged_stale_and_replayed_requests_are_refused(hooks):
    """(c) A bad signature, a stale timestamp, and a token replayed with another message:
    401, nothing stored, no attachment bytes kept; a malformed body gets 406."""
    client, path, store = hooks["client"], hooks["paths"]["mailgun"], hooks["store"]
    before = stored_files(store)
    forged = mailgun_multipart("attachments.multipart", "key-not-the-right-one")
    forged = (forged[0].replace(b"abcdef@", b"forged@"), forged[1])
    stale = mailgun_multipart("attachments.multipart", MAILGUN_KEY, timestamp=1_000_000_000)
    stale = (stale[0].replace(b"abcdef@", b"stale0@"), stale[1])
    first, headers = mailgun_form("thread_reply.form", MAILGUN_KEY, token="r" * 50)
    replay, _ = mailgun_form("thread_reply.form", MAILGUN_KEY, token="r" * 50)
    replay = replay.replace(b"fedcba", b"replay")
    first = first.replace(b"fedcba", b"origin")
    answers = [client.post(path, content=b, headers=h) for b, h in (forged, stale)]
    answers += [client.post(path, content=b, headers=headers) for b in (first, replay)]
    assert [a.status_code for a in answers] == [401, 401, 200, 401]
    assert [a.json().get("error") for a in answers] == [
        "bad_signature",
        "stale_timestamp",
        None,
        "replayed",
    ]
    assert events(hooks["url"], "%forged@%") == events(hooks["url"], "%stale0@%") == []
    assert events(hooks["url"], "%replay@%") == []
    assert stored_files(store) == before and leftovers(store) == []
    unsigned = b'--b\r\nContent-Disposition: form-data; name="recipient"\r\n\r\nx@y.z\r\n--b--\r\n'
    bad = client.post(
        path, content=unsigned, headers={"content-type": "multipart/form-data; boundary=b"}
    )
    assert (bad.status_code, bad.json()["error"]) == (401, "missing_signature")
    body, headers = mailgun_form("thread_reply.form", MAILGUN_KEY)
    malformed = body.replace(b"message-headers=", b"message-headers=%5Bnot+json")
    answer = client.post(path, content=malformed, headers=headers)
    assert (answer.status_code, answer.json()["error"]) == (406, "bad_body")


# --- Postmark ------------------------------------------------------------------------


def _postmark(name: str, auth=POSTMARK_AUTH, **changes) -> tuple[bytes, dict]:
    doc = json.loads(fixture("postmark", name))
    doc.update(changes)
    headers = {"content-type": "application/json", **(basic(*auth) if auth else {})}
    return json.dumps(doc).encode(), headers


def test_postmark_basic_auth(hooks):
    """(a) The configured credentials are accepted."""
    client, path = hooks["client"], hooks["paths"]["postmark"]
    answers = [
        client.post(path, content=b, headers=h)
        for b, h in (_postmark("attachments.json"), _postmark("thread_reply.json"))
    ]
    assert [a.status_code for a in answers] == [200, 200]
    assert len(events(hooks["url"], "%-11e1-8e72-a8904824019b")) == 2


def test_postmark_duplicate_delivery_is_stored_once(hooks):
    """(b) Postmark retrying the same MessageID: 200 twice, one row."""
    client, path = hooks["client"], hooks["paths"]["postmark"]
    body, headers = _postmark("thread_reply.json", MessageID="dup-postmark-0001")
    answers = [client.post(path, content=body, headers=headers) for _ in range(2)]
    assert [a.json()["status"] for a in answers] == ["stored", "duplicate"]
    assert len(events(hooks["url"], "%dup-postmark-0001")) == 1


def test_postmark_forged_requests_are_refused_and_nothing_is_stored(hooks):
    """(c) Wrong or missing credentials get 401 (Postmark retries, so fixing the secret
    lets the mail through); a body that can never be accepted gets 403 (no retries)."""
    client, path, store = hooks["client"], hooks["paths"]["postmark"], hooks["store"]
    before = stored_files(store)
    forged = _postmark("attachments.json", auth=("postmark", "nope"), MessageID="forged-pm-1")
    missing = _postmark("attachments.json", auth=None, MessageID="forged-pm-2")
    answers = [client.post(path, content=b, headers=h) for b, h in (forged, missing)]
    assert [a.status_code for a in answers] == [401, 401]
    broken = _postmark(
        "attachments.json",
        MessageID="broken-pm-3",
        Attachments=[{"Name": "x", "Content": "not base64!"}],
    )
    assert client.post(path, content=broken[0], headers=broken[1]).status_code == 403
    assert events(hooks["url"], "%-pm-_") == []
    assert stored_files(store) == before and leftovers(store) == []


# --- end to end ----------------------------------------------------------------------


def test_every_provider_end_to_end_into_the_views(hooks):
    """One request per fixture (a redelivery of what the tests above posted, or new),
    drained by the worker: conversations, bodies in their charsets, attachments with
    their stored bytes and sizes, threads."""
    url, store = hooks["url"], hooks["store"]
    client, paths = hooks["client"], hooks["paths"]
    twilio_path = paths["twilio"]
    posts = [
        ("twilio", *twilio_request(PUBLIC + twilio_path, twilio_params(name), TWILIO_TOKEN))
        for name in ("sms_unicode.json", "mms_three_media.json", "sms_new_params.json")
    ]
    posts += [
        ("sendgrid", *_sendgrid("latin1_attachments.multipart")),
        ("sendgrid", *_sendgrid("shift_jis_no_message_id.multipart")),
        ("sendgrid-token", *_sendgrid("long_thread_reply.multipart", auth=None)),
        ("sendgrid", *_sendgrid("raw_mime.multipart")),
        ("mailgun", *mailgun_multipart("attachments.multipart", MAILGUN_KEY)),
        ("mailgun", *mailgun_form("thread_reply.form", MAILGUN_KEY)),
        ("postmark", *_postmark("attachments.json")),
        ("postmark", *_postmark("thread_reply.json")),
    ]
    answers = [client.post(paths[name], content=b, headers=h) for name, b, h in posts]
    assert [a.status_code for a in answers] == [200] * len(posts)
    run_cli("convdb", "queue-worker", "--burst", "-q", env={"DATABASE_URL": url}, check=True)
    assert query(url, "SELECT count(*) FROM inbound_events WHERE status <> 'done'") == [(0,)]
    bodies = {r[0] for r in query(url, "SELECT body_text FROM conversation_messages")}
    assert "Grüße aus Köln!\n\nAnbei der Lageplan und das Angebot. Ça va, Éloïse?\n" in bodies
    assert any(b.startswith("お世話になっております。\n請求書の件") for b in bodies)
    assert any(b.startswith("Hola 👋 ¿podemos") for b in bodies)
    assert any(b.startswith("Bonjour, voilà le reçu.") for b in bodies)
    stored = query(
        url,
        "SELECT u.raw, a.content_type, a.size FROM attachments a "
        "JOIN attachment_urls u ON u.id = a.url_id WHERE u.raw LIKE 'convdb-attachment:%'",
    )
    assert {ct for _, ct, _ in stored} >= {"image/png", "application/pdf", "text/plain"}
    for raw, _, size in stored:
        digest = raw.rsplit("/", 1)[1]
        data = (store / "sha256" / digest[:2] / digest[2:4] / digest).read_bytes()
        assert len(data) == size and hashlib.sha256(data).hexdigest() == digest
    names = query(
        url,
        "SELECT payload->'attachments'->0->>'filename' FROM inbound_events "
        "WHERE payload->'provider'->>'name' = 'sendgrid' AND payload ? 'attachments'",
    )
    assert ("Lageplan Köln.png",) in names
    most = query(url, "SELECT max(attachments_count) FROM conversation_messages")
    assert most == [(3,)]  # the MMS's three media, the Mailgun mail's three files
    threads = dict(
        query(url, "SELECT key, message_count FROM conversations WHERE key LIKE 'email:%'")
    )
    assert threads["email:thread-00.cafe@mail.example.org"] == 1
    assert threads["email:pm-00@mail.example.pt"] == 2  # the reply, and the duplicate test's
    # the Mailgun mail, its reply and the two replies of the duplicate and replay tests
    assert threads["email:CAF=2025110813.abcdef@mail.example.se"] == 4
    assert scalar(url, "SELECT count(*) FROM conversation_overview") >= 6
