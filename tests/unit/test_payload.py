"""Validation refuses, before any SQL, what the database would refuse or should never store.

Every case here names its field in a :class:`PayloadError`: timestamps out
of range once in UTC, addresses that are not well formed or too long for
the indexes they go into, attachment URLs that are not ``http(s)``.
"""

from __future__ import annotations

import json

import pytest

from convdb.attachments import content_url
from convdb.exceptions import PayloadError
from convdb.ingest import parse_message
from convdb.ingest.payload import MAX_ADDRESS_BYTES

from ..support import example

SMS = {"kind": "sms", "name": "twilio"}


def refused(payload: dict) -> str:
    with pytest.raises(PayloadError) as info:
        parse_message(payload)
    return str(info.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sent_at", "0001-01-01T00:00:00+02:00"),
        ("sent_at", "9999-12-31T23:00:00-02:00"),
        ("received_at", "0001-01-01T01:00:00+01:01"),
    ],
)
def test_a_timestamp_out_of_range_in_utc_names_its_field(field, value):
    assert refused(example(**{field: value})).startswith(f"{field}: {value!r} is out of range")


def test_the_edges_of_the_range_are_accepted():
    msg = parse_message(example(sent_at="0001-01-01T00:00:00Z", received_at="9999-12-31T23:59Z"))
    assert (msg.sent_at.year, msg.received_at.year) == (1, 9999)


def test_an_address_too_long_for_the_thread_key_index_is_refused():
    """A character limit lets through 320 characters of up to 4 UTF-8 bytes,
    which normalization can expand further: two such addresses in a thread
    key can pass the btree limit of 2,704 bytes (SQLSTATE 54000). The limit
    is on the normalized UTF-8 bytes, so a thread key stays under ~700 bytes."""
    local = "".join(chr(0x4E00 + i * 37) for i in range(300))
    payload = example(sender={"address": f"{local}@example.com"}, conversation_key=None)
    assert len(payload["from"]["address"]) <= 320  # a length the character limit let through
    message = refused(payload)
    assert message == f"from.address: longer than {MAX_ADDRESS_BYTES} bytes once normalized"


def test_an_address_at_the_limit_is_accepted():
    local = "x" * (MAX_ADDRESS_BYTES - len("@example.com"))
    msg = parse_message(example(sender={"address": f"{local}@example.com"}))
    assert len(msg.sender.normalized) == MAX_ADDRESS_BYTES


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(document.cookie)",
        "JavaScript:alert(1)",
        "file:///etc/passwd",
        "data:text/html;base64,PHNjcmlwdD4=",
        "ftp://files.example/a.png",
        "//files.example/a.png",
        "files.example/a.png",
    ],
)
def test_attachment_urls_other_than_http_are_refused(url):
    message = refused(example(attachments=[{"url": "https://ok.example/a"}, {"url": url}]))
    assert message.startswith("attachments[1].url: scheme ")
    assert message.endswith("allowed: http, https, convdb-attachment")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https:///no-host", "no host"),
        ("https://files.example/a b.png", "contains whitespace"),
        ("https://files.example/\x07.png", "contains a control character (U+0007)"),
        ("https://[::1/a.png", "not a URL"),
        ("https://files.example:99999/a.png", "not a URL"),
    ],
)
def test_malformed_attachment_urls_are_refused(url, reason):
    assert refused(example(attachments=[{"url": url}])).startswith(f"attachments[0].url: {reason}")


def test_http_and_https_urls_are_kept_as_given():
    urls = ["https://files.example/a.png?sig=x%20y", "HTTP://Files.Example/B.PNG", " http://x.io "]
    msg = parse_message(example(attachments=[{"url": u} for u in urls]))
    assert [a[0] for a in msg.attachments] == urls


def test_the_attachment_stores_urls_are_accepted_well_formed_only():
    stored = content_url("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")
    msg = parse_message(example(attachments=[{"url": stored, "content_type": "a/b", "size": 5}]))
    assert msg.attachments == ((stored, "a/b", 5, None),)
    for bad in ("convdb-attachment://sha256/xyz", "convdb-attachment://md5/" + "0" * 64):
        message = refused(example(attachments=[{"url": bad}]))
        assert message.startswith("attachments[0].url: not a stored attachment")


@pytest.mark.parametrize("size", [-1, 1.5, "12", True, 2**63])
def test_an_attachment_size_is_a_non_negative_integer(size):
    message = refused(example(attachments=[{"url": "https://x.io/a", "size": size}]))
    assert message == "attachments[0].size: expected a non-negative integer (bytes)"


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("a@b@c", "'@' in the local part"),
        ("jane doe@example.com", "' ' in the local part"),
        ('"jane"@example.com', "'\"' in the local part"),
        ("<jane@example.com>", "'<' in the local part"),
        ("jane@", "expected local-part@domain"),
        ("@example.com", "expected local-part@domain"),
        ("jane.example.com", "expected local-part@domain"),
        ("jane@example..com", "empty label in the domain"),
        ("jane@example.com.", "empty label in the domain"),
        ("jane@exa mple.com", "' ' in the domain"),
        ("jane@[127.0.0.1]", "'[' in the domain"),
    ],
)
def test_malformed_email_addresses_are_refused(address, reason):
    message = refused(example(to=[{"address": "support@acme.example"}, {"address": address}]))
    assert message.startswith(f"to[1].address: not an email address: {reason}")


@pytest.mark.parametrize("kind", ["email", "sms"])
@pytest.mark.parametrize("char", ["\x00", "\x07", "\n", "\x1b", "\x7f", "\x85"])
def test_addresses_with_control_characters_are_refused(kind, char):
    address = f"jane{char}@example.com" if kind == "email" else f"+1415{char}5552671"
    payload = example(provider={"kind": kind, "name": "p"}, sender={"address": address})
    assert refused(payload).startswith("from.address: contains a")


@pytest.mark.parametrize(
    "address",
    ["Jane.Doe+tag@Example.COM", "jane..doe@example.com", "jürgen@bücher.de", "a_b@mail-1.x_y.io"],
)
def test_well_formed_email_addresses_are_accepted(address):
    assert parse_message(example(sender={"address": address})).sender.raw == address


@pytest.mark.parametrize(
    ("address", "normalized"),
    [
        ("(415) 555-2671", "+14155552671"),
        ("tel:+1-415-555-2671", "+14155552671"),
        ("1-800-FLOWERS", "+18003569377"),
        ("+1 415 555 2671 ext. 89", "+14155552671"),
        ("\uff14\uff11\uff15\uff15\uff15\uff15\uff12\uff16\uff17\uff11", "+14155552671"),
    ],
)
def test_written_phone_numbers_are_accepted(address, normalized):
    msg = parse_message(example(provider=SMS, sender={"address": address}, to=[{"address": "1"}]))
    assert msg.sender.normalized == normalized


@pytest.mark.parametrize("address", ["a@b@c", "+1 415 555 2671 <home>", "415☎5552671"])
def test_malformed_phone_numbers_are_refused(address):
    message = refused(example(provider=SMS, sender={"address": address}))
    assert message.startswith("from.address: not a phone number: ")


def test_validation_needs_no_database():
    """Nothing above touches SQL: the payloads are refused from the JSON alone."""
    payload = json.loads(json.dumps(example(sent_at="0001-01-01T00:00:00+02:00")))
    assert refused(payload).startswith("sent_at:")


def test_attachment_file_names_are_kept_cut_to_255_characters_or_dropped_when_blank():
    payload = example(
        attachments=[
            {"url": "https://files.example/a.png", "filename": "  plan.png "},
            {"url": "https://files.example/b.png", "filename": "x" * 300},
            {"url": "https://files.example/c.png", "filename": "   "},
            {"url": "https://files.example/d.png"},
        ]
    )
    names = [a[3] for a in parse_message(payload).attachments]
    assert names == ["plan.png", "x" * 255, None, None]
