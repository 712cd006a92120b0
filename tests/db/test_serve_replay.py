"""The replay guard is keyed by the signing key (issue 16, item 2): a Mailgun token is spent
once per key, at whatever endpoint, provider or reference holds it; the key is never stored."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlencode

import pytest

from convdb import migrate as migrate_lib
from convdb.migrate import CORE
from convdb.testing import query, scalar

from ..asgi_support import InProcess
from ..provider_support import fixture, mailgun_signature
from ..serve_support import add_endpoint
from ..support import migrate_before

KEY = "key-5b1f0c9a7e3d2c4b6a8f0e1d3c5b7a9f"


@pytest.fixture
def two_customers(db_url, monkeypatch, tmp_path):
    """Acme's and Globex's Mailgun endpoints, one signing key under two references."""
    monkeypatch.setenv("TEST_MG_ACME", KEY)
    monkeypatch.setenv("TEST_MG_GLOBEX", KEY)
    monkeypatch.setenv("CONVDB_ATTACHMENT_DIR", str(tmp_path / "attachments"))
    paths = {
        "acme": add_endpoint(
            db_url, "acme", "mailgun", adapter="mailgun", secret_ref="env:TEST_MG_ACME"
        ),
        "globex": add_endpoint(
            db_url, "globex", "mailgun", adapter="mailgun", secret_ref="env:TEST_MG_GLOBEX"
        ),
    }
    with InProcess(db_url) as app:
        yield app, paths


def form(signed: list[tuple[str, str]], **changes: str) -> tuple[bytes, dict]:
    """The thread-reply fixture with ``signed`` (timestamp, token, signature) appended."""
    body = fixture("mailgun", "thread_reply.form").strip()
    for name, value in changes.items():
        body = body.replace(name.encode(), value.encode())
    return body + b"&" + urlencode(signed).encode(), {
        "content-type": "application/x-www-form-urlencoded"
    }


def customers_of(url: str) -> list[str]:
    return [
        r[0]
        for r in query(url, "SELECT payload->'customer'->>'key' FROM inbound_events ORDER BY id")
    ]


def test_a_captured_signature_replayed_at_another_customers_endpoint_is_refused(
    db_url, two_customers
):
    app, paths = two_customers
    signed = mailgun_signature(KEY, token="c" * 50)
    original = app.post(paths["acme"], *form(signed))
    forged = app.post(
        paths["globex"], *form(signed, **{"Re%3A+Protokoll+und+Fotos": "FORGED%3A+wire+money"})
    )
    same_body = app.post(paths["globex"], *form(signed))
    retry = app.post(paths["acme"], *form(signed))
    assert (original.status_code, original.json()) == (200, {"status": "stored"})
    assert (forged.status_code, forged.json()["error"]) == (401, "replayed")
    assert (same_body.status_code, same_body.json()["error"]) == (401, "replayed")
    assert (retry.status_code, retry.json()) == (200, {"status": "duplicate"})
    assert customers_of(db_url) == ["acme"]
    # the guard holds an HMAC of the key under the database's replay key, never the key
    replay_key = bytes(scalar(db_url, "SELECT key FROM webhook_replay_key"))
    assert len(replay_key) == 32
    assert query(db_url, "SELECT scope, nonce FROM webhook_nonces") == [
        (hmac.new(replay_key, KEY.encode(), hashlib.sha256).hexdigest(), "c" * 50)
    ]
    dump = str(query(db_url, "SELECT * FROM webhook_nonces")) + str(
        query(db_url, "SELECT credentials_ref FROM providers")
    )
    assert KEY not in dump


def test_another_signing_key_is_another_scope(db_url, two_customers, monkeypatch):
    """The same token under two keys is two nonces (each key's sender draws its own)."""
    app, paths = two_customers
    monkeypatch.setenv("TEST_MG_GLOBEX", KEY + "-other")
    token = "d" * 50
    first = app.post(paths["acme"], *form(mailgun_signature(KEY, token=token)))
    other = app.post(
        paths["globex"],
        *form(mailgun_signature(KEY + "-other", token=token), fedcba="globex"),
    )
    assert [first.status_code, other.status_code] == [200, 200]
    assert customers_of(db_url) == ["acme", "globex"]
    assert scalar(db_url, "SELECT count(DISTINCT scope) FROM webhook_nonces") == 2


def test_a_nonce_spent_before_032_stays_spent(db_url, two_customers):
    """A row kept per endpoint by 020 (scope ``endpoint:<id>`` after 032) refuses a
    replay at that endpoint."""
    app, paths = two_customers
    endpoint = scalar(
        db_url,
        "SELECT e.id FROM webhook_endpoints e JOIN providers p ON p.id = e.provider_id "
        "JOIN customers c ON c.id = p.customer_id WHERE c.key = 'acme'",
    )
    query(
        db_url,
        "INSERT INTO webhook_nonces (scope, nonce, endpoint_id, idempotency_key, expires_at) "
        "VALUES (%s, %s, %s, 'hook:1:mid:earlier', now() + interval '1 day')",
        (f"endpoint:{endpoint}", "e" * 50, endpoint),
    )
    answer = app.post(paths["acme"], *form(mailgun_signature(KEY, token="e" * 50)))
    assert (answer.status_code, answer.json()["error"]) == (401, "replayed")
    assert customers_of(db_url) == []


def test_032_keeps_existing_nonces_and_rolls_back(empty_db_url):
    """Nonces stored per endpoint by 020 get the scope ``endpoint:<id>``; removing the
    endpoint no longer frees them; rollback restores 020's key."""
    url = empty_db_url
    migrate_before(url, "032")
    path = add_endpoint(url, "acme", "mailgun", adapter="mailgun", secret_ref="env:X")
    assert path.startswith("/hooks/")
    endpoint = scalar(url, "SELECT max(id) FROM webhook_endpoints")
    query(
        url,
        "INSERT INTO webhook_nonces (endpoint_id, nonce, idempotency_key, expires_at) "
        "VALUES (%s, 'old-token', 'hook:1:k', now() + interval '1 day')",
        (endpoint,),
    )
    migrate_lib.run(url, echo=lambda _: None)
    assert query(url, "SELECT scope, nonce, endpoint_id FROM webhook_nonces") == [
        (f"endpoint:{endpoint}", "old-token", endpoint)
    ]
    later = [name for name in CORE.modules() if name >= "032"]
    migrate_lib.rollback(url, count=len(later), force=True, echo=lambda _: None)
    assert query(url, "SELECT endpoint_id, nonce FROM webhook_nonces") == [(endpoint, "old-token")]
    migrate_lib.run(url, echo=lambda _: None)
    query(url, "DELETE FROM webhook_endpoints")
    assert query(url, "SELECT scope, endpoint_id FROM webhook_nonces") == [
        (f"endpoint:{endpoint}", None)
    ]
