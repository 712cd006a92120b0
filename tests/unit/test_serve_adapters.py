"""The receiver's pure parts: Standard Webhooks signatures, secrets, settings, URLs."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import time

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from convdb.exceptions import ConfigError
from convdb.serve.adapters import Endpoint, Headers, Rejection, WebhookRequest
from convdb.serve.app import mask_path
from convdb.serve.secrets import SecretUnavailable, parse_ref, read_secret
from convdb.serve.settings import ServeSettings, load_serve_settings, parse_networks
from convdb.serve.standard import StandardWebhooks, generate_secret, sign
from convdb.serve.urls import client_address, public_url

ENDPOINT = Endpoint(7, "standard", 3, "email", "inhouse", 2, "acme", "Acme", "env:X")


def request(body: bytes, headers: dict, secret: str, *, subpath: str = "") -> WebhookRequest:
    async def chunks():
        for i in range(0, len(body), 5):
            yield body[i : i + 5]

    return WebhookRequest(
        method="POST",
        path="/hooks/t",
        subpath=subpath,
        query="",
        headers=Headers(headers.items()),
        url="http://x/hooks/t",
        client="127.0.0.1",
        endpoint=ENDPOINT,
        chunks=chunks,
        secret=lambda: secret,
        max_body=1024,
        tolerance=300,
    )


def receive(body: bytes, headers: dict, secret: str, **kwargs):
    return asyncio.run(StandardWebhooks().receive(request(body, headers, secret, **kwargs)))


BODY = json.dumps({"type": "message.received", "data": {"message_id": "m1"}}).encode()


def test_our_signature_verifies_with_the_reference_library_and_back():
    secret, now = generate_secret(), int(time.time())
    ours = sign(secret, "msg_1", now, BODY)
    assert Webhook(secret).verify(BODY, ours) == json.loads(BODY)
    theirs = Webhook(secret).sign("msg_1", dt.datetime.fromtimestamp(now, dt.UTC), BODY.decode())
    assert theirs == ours["webhook-signature"]
    delivery = receive(BODY, {**ours, "webhook-signature": theirs}, secret)
    assert (delivery.event_type, delivery.idempotency_key) == ("message.received", "msg_1")
    assert delivery.payload["customer"] == {"key": "acme", "name": "Acme"}  # the endpoint's


def test_a_forged_or_other_key_signature_fails_both_here_and_in_the_library():
    secret, other = generate_secret(), generate_secret()
    headers = sign(other, "msg_2", int(time.time()), BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, headers)
    with pytest.raises(Rejection) as refused:
        receive(BODY, headers, secret)
    assert (refused.value.kind, refused.value.reason) == ("unauthorized", "bad_signature")
    tampered = sign(secret, "msg_2", int(time.time()), BODY)
    with pytest.raises(Rejection):
        receive(BODY.replace(b"m1", b"m2"), tampered, secret)


def test_rotation_any_v1_entry_may_match_and_other_versions_are_skipped():
    secret, old = generate_secret(), generate_secret()
    now = int(time.time())
    new_sig = sign(secret, "msg_3", now, BODY)["webhook-signature"]
    old_sig = sign(old, "msg_3", now, BODY)["webhook-signature"]
    headers = sign(secret, "msg_3", now, BODY)
    headers["webhook-signature"] = f"{old_sig} v1a,{new_sig[3:]} {new_sig}"
    assert receive(BODY, headers, secret).idempotency_key == "msg_3"
    headers["webhook-signature"] = f"{old_sig} v1a,{new_sig[3:]}"
    with pytest.raises(Rejection, match="bad_signature"):
        receive(BODY, headers, secret)


@pytest.mark.parametrize("offset", [-301, 301, -10_000_000])
def test_timestamps_outside_the_tolerance_are_refused(offset):
    secret = generate_secret()
    headers = sign(secret, "msg_4", int(time.time()) + offset, BODY)
    with pytest.raises(Rejection) as refused:
        receive(BODY, headers, secret)
    assert refused.value.reason == "stale_timestamp"
    assert receive(BODY, sign(secret, "msg_4", int(time.time()) - 290, BODY), secret)


def test_event_type_from_the_path_must_agree_with_the_body():
    secret = generate_secret()
    body = json.dumps({"data": {"x": 1}}).encode()
    delivery = receive(
        body, sign(secret, "m", int(time.time()), body), secret, subpath="/conversation.tagged"
    )
    assert delivery.event_type == "conversation.tagged"
    # every event type is held to the endpoint's customer, not only message.*
    assert delivery.payload == {"x": 1, "customer": {"key": "acme", "name": "Acme"}}
    with pytest.raises(Rejection, match="bad_event_type"):
        receive(BODY, sign(secret, "m", int(time.time()), BODY), secret, subpath="/other.type")


def test_a_secret_that_is_not_whsec_base64_is_a_configuration_error():
    headers = sign(generate_secret(), "m", int(time.time()), BODY)
    with pytest.raises(SecretUnavailable) as error:
        receive(BODY, headers, "whsec_!!!not base64!!!")
    assert "!!!" not in str(error.value)


def test_secret_references_are_read_at_each_call(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVDB_UNIT_SECRET", "  s3cret\n")
    assert read_secret("env:CONVDB_UNIT_SECRET") == "s3cret"
    path = tmp_path / "secret"
    path.write_text("first\n")
    assert read_secret(f"file:{path}") == "first"
    path.write_text("second")
    assert read_secret(f"file:{path}") == "second"
    monkeypatch.delenv("CONVDB_UNIT_SECRET")
    with pytest.raises(SecretUnavailable, match="env:CONVDB_UNIT_SECRET: the variable is not set"):
        read_secret("env:CONVDB_UNIT_SECRET")
    with pytest.raises(SecretUnavailable, match="cannot read the file"):
        read_secret(f"file:{tmp_path / 'missing'}")
    for bad in ["", "whsec_abc", "env:1BAD", "file:relative/path", "vault:x", "env:" + "A" * 200]:
        with pytest.raises(ConfigError):
            parse_ref(bad)


def test_settings_are_checked_with_the_variable_named(monkeypatch, tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("CONVDB_SERVE_MAX_BODY=2048\nCONVDB_TRUSTED_PROXIES=10.0.0.0/8, ::1\n")
    settings = load_serve_settings(env_file)
    assert settings.max_body == 2048 and settings.trusts("10.1.2.3") and settings.trusts("::1")
    assert not settings.trusts("192.168.1.1") and not settings.trusts("nonsense")
    for name, value, message in [
        ("CONVDB_SERVE_MAX_BODY", "lots", "CONVDB_SERVE_MAX_BODY='lots': not a whole number"),
        ("CONVDB_SERVE_TOLERANCE", "0", "CONVDB_SERVE_TOLERANCE='0': out of range"),
        ("CONVDB_PUBLIC_URL", "ftp://x", "CONVDB_PUBLIC_URL='ftp://x': must be http"),
        ("CONVDB_PUBLIC_URL", "https://x/?a=1", "must not hold a query"),
        ("CONVDB_TRUSTED_PROXIES", "10.0.0.0/8,proxy.local", "'proxy.local' is not an address"),
    ]:
        monkeypatch.setenv(name, value)
        with pytest.raises(ConfigError, match=message.replace("?", r"\?")):
            load_serve_settings(env_file)
        monkeypatch.delenv(name)


def _scope(client="203.0.113.9", path="/hooks/tok", query=b"a=1", root_path=""):
    return {
        "client": (client, 5555),
        "scheme": "http",
        "path": path,
        "query_string": query,
        "root_path": root_path,
        "server": ("10.0.0.7", 8000),
    }


def test_public_url_and_client_through_a_trusted_proxy_only():
    forwarded = Headers(
        {
            "host": "10.0.0.7:8000",
            "x-forwarded-proto": "https",
            "x-forwarded-host": "hooks.example.com",
            "x-forwarded-port": "443",
            "x-forwarded-for": "198.51.100.1, 10.0.0.2",
        }.items()
    )
    plain = ServeSettings()
    proxied = ServeSettings(trusted_proxies=parse_networks("10.0.0.0/8"))
    pinned = ServeSettings(public_url="https://pub.example/convdb")
    assert public_url(_scope(), forwarded, plain) == "http://10.0.0.7:8000/hooks/tok?a=1"
    assert client_address(_scope(), forwarded, plain) == "203.0.113.9"
    via = _scope(client="10.0.0.2")
    assert public_url(via, forwarded, proxied) == "https://hooks.example.com/hooks/tok?a=1"
    assert client_address(via, forwarded, proxied) == "198.51.100.1"
    assert public_url(via, forwarded, pinned) == "https://pub.example/convdb/hooks/tok?a=1"
    mounted = _scope(path="/inner/hooks/tok", root_path="/inner", query=b"")
    assert public_url(mounted, forwarded, pinned) == "https://pub.example/convdb/hooks/tok"


def test_request_helpers_limit_what_they_accept():
    req = request(b"", {"authorization": "Basic " + base64.b64encode(b"u:p:w").decode()}, "s")
    assert req.basic_auth() == ("u", "p:w")
    assert request(b"", {"authorization": "Bearer x"}, "s").basic_auth() is None
    assert req.form(b"a=1&b=&a=%C3%A9") == [("a", "1"), ("b", ""), ("a", "é")]
    with pytest.raises(Rejection, match="bad_form"):
        req.form(b"&".join(b"k=v" for _ in range(1001)))
    with pytest.raises(Rejection, match="bad_json"):
        req.json(b"[" * 70 + b"]" * 70)
    headers = Headers([("X-A", "1"), ("x-a", "2")])
    assert headers["x-a"] == "1" and headers.get_all("X-A") == ["1", "2"]
    big = request(b"x" * 2000, {}, "s")
    with pytest.raises(Rejection) as refused:
        asyncio.run(big.body())
    assert refused.value.kind == "too_large"


def test_log_paths_never_show_the_token():
    token = "AbCdEf" + "x" * 37
    assert mask_path(f"/hooks/{token}") == "/hooks/AbCdEf..."
    assert mask_path(f"/hooks/{token}/message.received") == "/hooks/AbCdEf.../message.received"
    assert mask_path("/healthz") == "/healthz"
