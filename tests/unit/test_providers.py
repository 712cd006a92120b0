"""Provider adapters' pure parts: Twilio's signature against twilio-python, URL variants,
email headers, the attachment store, and streamed multipart (charsets, limits)."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from twilio.request_validator import RequestValidator

from convdb.attachments import (
    URL_SCHEMES,
    AttachmentSettings,
    AttachmentTooLarge,
    LocalStore,
    Staging,
    digest_of,
    load_attachment_settings,
)
from convdb.exceptions import ConfigError
from convdb.serve.adapters import Endpoint, Headers, Rejection, WebhookRequest
from convdb.serve.providers import common, twilio
from convdb.serve.providers.multipart import read_form

from ..provider_support import FIXTURES, fixture, multipart_headers, twilio_params

TOKEN = "12345"


@pytest.mark.parametrize("name", sorted(p.name for p in (FIXTURES / "twilio").iterdir()))
def test_twilio_signature_is_twilio_pythons(name):
    params = twilio_params(name)
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    ours = twilio.signature(TOKEN, url, params)
    assert ours == RequestValidator(TOKEN).compute_signature(url, dict(params))
    assert twilio.signature(TOKEN, url + "x", params) != ours


def test_twilio_signature_of_twilios_documented_example():
    """The example of Twilio's security documentation (and twilio-python's tests)."""
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+12349013030",
        "Digits": "1234",
        "From": "+12349013030",
        "To": "+18005551212",
    }
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert twilio.signature(TOKEN, url, list(params.items())) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


def test_twilio_repeated_parameters_sort_their_values():
    params = [("B", "2"), ("A", "z"), ("A", "y")]
    assert twilio.signature(TOKEN, "https://x/", params) == twilio.signature(
        TOKEN, "https://x/", [("A", "y"), ("A", "z"), ("B", "2")]
    )


@pytest.mark.parametrize(
    ("url", "variants"),
    [
        ("https://h.example/hooks/t", ["https://h.example:443/hooks/t"]),
        ("https://h.example:443/hooks/t?a=1", ["https://h.example/hooks/t?a=1"]),
        ("http://h.example/hooks/t", ["http://h.example:80/hooks/t"]),
        ("http://h.example:8000/hooks/t", []),  # a non-default port is never dropped
    ],
)
def test_twilio_url_variants_add_or_remove_the_default_port(url, variants):
    assert twilio.url_variants(url) == [url, *variants]
    validator = RequestValidator(TOKEN)
    for variant in variants:
        signed = validator.compute_signature(variant, {"A": "1"})
        assert validator.validate(url, {"A": "1"}, signed)  # twilio-python agrees


def test_twilio_signature_algorithm_header():
    assert twilio.algorithm_of(None) == "HMAC_SHA1"
    assert twilio.algorithm_of("key=webhooks_sharedkey_1,algorithm=HMAC_SHA256") == "HMAC_SHA256"
    with pytest.raises(Rejection) as refused:
        twilio.algorithm_of("algorithm=MD5")
    assert refused.value.kind == "unauthorized"


def test_email_thread_key_message_key_and_date():
    headers = [
        ("Message-ID", "<c@x>"),
        ("In-Reply-To", "<b@x>"),
        ("References", "<a@x> <b@x>"),
    ]
    assert common.thread_key(headers) == "email:a@x"
    assert common.thread_key(headers[:2]) == "email:b@x"
    assert common.thread_key(headers[:1]) == "email:c@x"
    assert common.thread_key([]) is None
    assert common.thread_key([("References", f"<{'r' * 300}@x>")]).startswith("email:sha256:")
    assert common.message_key(" <abc@mail.example> ") == "mid:abc@mail.example"
    assert common.message_key("<spaced id@x>").startswith("mid-sha256:")
    assert common.message_key(None) is None
    assert common.email_date("Wed, 5 Nov 2025 09:00:01 +0100", 0) == "2025-11-05T08:00:01+00:00"
    assert common.email_date("yesterday", 0) == "1970-01-01T00:00:00+00:00"
    assert common.addresses('"Müller, Jürgen" <j@x.de>, bad, j@X.de, b@y') == [
        {"address": "j@x.de", "name": "Müller, Jürgen"},
        {"address": "b@y"},
    ]
    assert common.clean_text("a\x00b\ud800") == "a\ufffdb?"


# --- the attachment store ------------------------------------------------------------


def store_in(tmp_path, max_bytes=1024) -> LocalStore:
    return LocalStore(AttachmentSettings(directory=tmp_path, max_bytes=max_bytes))


def test_the_local_store_keeps_each_content_once_and_atomically(tmp_path):
    store = store_in(tmp_path)
    first = store.put(b"hello", "Text/Plain; charset=utf-8", "../../etc/a.txt")
    again = store.put(b"hello", "text/plain", "b.txt")
    assert (
        first.url
        == again.url
        == "convdb-attachment://sha256/" + hashlib.sha256(b"hello").hexdigest()
    )
    assert (first.size, first.content_type, first.filename) == (5, "text/plain", "a.txt")
    files = [p for p in (tmp_path / "sha256").rglob("*") if p.is_file()]
    assert len(files) == 1 and files[0].read_bytes() == b"hello"
    with store.open(first.url) as handle:
        assert handle.read() == b"hello"
    assert list((tmp_path / "tmp").iterdir()) == []
    assert digest_of(first.url) == hashlib.sha256(b"hello").hexdigest()
    assert digest_of("https://x/y") is None
    assert "convdb-attachment" in URL_SCHEMES


def test_uncommitted_and_oversized_attachments_leave_nothing(tmp_path):
    store = store_in(tmp_path, max_bytes=10)
    with Staging(store) as staging:
        writer = staging.begin("image/png", "x.png")
        writer.write(b"12345")
        temporaries = list((tmp_path / "tmp").iterdir())
        assert len(temporaries) == 1  # being written: only a temporary exists
        assert not (tmp_path / "sha256").exists()
    with pytest.raises(AttachmentTooLarge), Staging(store) as staging:
        staging.begin(None, None).write(b"x" * 11)
    assert list((tmp_path / "tmp").iterdir()) == []
    assert not (tmp_path / "sha256").exists()


def test_attachment_settings_are_checked(monkeypatch, tmp_path):
    monkeypatch.setenv("CONVDB_ATTACHMENT_DIR", str(tmp_path / "files"))
    monkeypatch.setenv("CONVDB_ATTACHMENT_MAX_BYTES", "2048")
    settings = load_attachment_settings(tmp_path / "no.env")
    assert (settings.directory, settings.max_bytes) == (tmp_path / "files", 2048)
    monkeypatch.setenv("CONVDB_ATTACHMENT_MAX_BYTES", "lots")
    with pytest.raises(ConfigError, match="CONVDB_ATTACHMENT_MAX_BYTES"):
        load_attachment_settings(tmp_path / "no.env")


# --- streamed multipart --------------------------------------------------------------


def request_of(body: bytes, headers: dict, chunk: int = 97) -> WebhookRequest:
    async def chunks():
        for at in range(0, len(body), chunk):
            yield body[at : at + chunk]

    endpoint = Endpoint(1, "sendgrid", 1, "email", "sg", 1, "acme", "Acme", "none:")
    return WebhookRequest(
        method="POST",
        path="/hooks/t",
        subpath="",
        query="",
        headers=Headers(headers.items()),
        url="https://h/hooks/t",
        client=None,
        endpoint=endpoint,
        chunks=chunks,
        secret=lambda: "",
        max_body=10**7,
        tolerance=300,
    )


def test_multipart_in_small_chunks_keeps_fields_bytes_and_files(tmp_path):
    body = fixture("sendgrid", "latin1_attachments.multipart")
    store = store_in(tmp_path, max_bytes=10**6)
    with Staging(store) as staging:
        form = asyncio.run(read_form(request_of(body, multipart_headers(body)), staging))
        stored = staging.commit()
    assert form.text("text", "iso-8859-1").startswith("Grüße aus Köln!")
    assert form.text("from") == "Jürgen Müller <juergen.mueller@example.de>"
    assert [name for name, _ in form.files] == ["attachment1", "attachment2"]
    assert [s.filename for s in stored] == ["Lageplan Köln.png", "Angebot.pdf"]
    assert stored[1].size == len(b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n")


def test_truncated_or_foreign_multipart_is_malformed(tmp_path):
    body = fixture("sendgrid", "latin1_attachments.multipart")
    store = store_in(tmp_path, max_bytes=10**6)
    for spoiled, headers in (
        (body[: len(body) // 2], multipart_headers(body)),
        (body, {"content-type": "application/json"}),
    ):
        with pytest.raises(Rejection) as refused, Staging(store) as staging:
            asyncio.run(read_form(request_of(spoiled, headers), staging))
        assert refused.value.kind == "malformed"
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
