"""Fuzz: hypothesis-generated headers and bodies to every adapter; no answer is a 500 and no
request writes a traceback (issue 16, item 5).

The receiver's real app runs in this process on a real database (``tests/asgi_support.py``)
so that hundreds of requests take seconds. Half of the requests of each adapter are
authentic (signed, or with the right credentials), so the fuzzing reaches past
authentication into parsing and storing; the rest carry random credentials.
"""

from __future__ import annotations

import json
import logging
import secrets
import string
import time
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convdb.serve.providers import mailgun as mailgun_adapter
from convdb.serve.providers import twilio as twilio_adapter
from convdb.serve.standard import generate_secret, sign

from ..asgi_support import InProcess
from ..provider_support import basic, fixture
from ..serve_support import add_adapter_endpoints
from ..support import example

pytestmark = pytest.mark.slow

PUBLIC = "https://hooks.example.com"
TWILIO_TOKEN = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
MAILGUN_KEY = "key-fuzz0123456789abcdef0123456789"
POSTMARK_AUTH = ("postmark", "pm-fuzz-pass")
STANDARD_SECRET = generate_secret()
BOUNDARY = "fuzzB0undary"

# --- strategies -------------------------------------------------------------------

text = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)
latin1 = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=40)
charset = st.sampled_from(
    [
        "utf-8",
        "latin-1",
        "shift_jis",
        "base64",
        "rot13",
        "hex",
        "zlib",
        "idna",
        "utf-7",
        "punycode",
        "unicode_escape",
        "uu",
        "bz2",
        "nope",
        "",
        "\x00",
        "utf-16",
    ]
)
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text
documents = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)
header_names = st.sampled_from(
    [
        "authorization",
        "content-type",
        "content-length",
        "x-twilio-signature",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "x-twilio-webhooks-signature-settings",
        "x-forwarded-host",
        "x-forwarded-proto",
        "date",
        "user-agent",
    ]
) | st.from_regex(r"\Ax-[a-z0-9-]{1,12}\Z")
headers = st.dictionaries(header_names, latin1, max_size=5)
content_types = st.one_of(
    st.sampled_from(
        ["application/x-www-form-urlencoded", "application/json", "text/plain", "", "*/*"]
    ),
    st.builds(lambda c: f"application/json; charset={c}", charset),
    st.builds(lambda b: f"multipart/form-data; boundary={b}", st.sampled_from([BOUNDARY, "", "x"])),
)
date_header = st.sampled_from(
    [
        "Fri, 31 Dec 9999 23:30:00 -0500",
        "Thu, 01 Jan 1970 00:00:00 +0100",
        "garbage",
        "Mon, 32 Foo 2025 25:61:61 +9999",
        "Tue, 11 Nov 2025 09:00:00 +0000",
        "",
    ]
)


def form_fields(names: list[str]):
    """``[(name, value)]`` with names a provider uses and random ones."""
    return st.lists(st.tuples(st.sampled_from(names) | text, text | date_header), max_size=8)


@st.composite
def multipart(draw, names: list[str], extra: list[tuple[str, str]] = ()) -> bytes:
    """A ``multipart/form-data`` body (boundary :data:`BOUNDARY`), maybe cut short."""
    parts = []
    for name, value in [*draw(form_fields(names)), *extra]:
        head = f'Content-Disposition: form-data; name="{name}"'
        if draw(st.booleans()):
            head += f'; filename="{draw(text)}"'
        if draw(st.booleans()):
            head += f"\r\nContent-Type: {draw(st.sampled_from(['text/plain', 'image/png']))}"
            head += f"; charset={draw(charset)}"
        data = draw(st.binary(max_size=60)) if draw(st.booleans()) else value.encode()
        parts.append(f"--{BOUNDARY}\r\n{head}\r\n\r\n".encode("utf-8", "replace") + data)
    body = b"\r\n".join(parts) + f"\r\n--{BOUNDARY}--\r\n".encode()
    return body[: draw(st.integers(0, len(body)))] if draw(st.booleans()) else body


def mailgun_signed() -> list[tuple[str, str]]:
    timestamp, token = str(int(time.time())), secrets.token_hex(25)
    return [
        ("timestamp", timestamp),
        ("token", token),
        ("signature", mailgun_adapter.signature(MAILGUN_KEY, timestamp, token)),
    ]


def with_doc(base: dict, changes) -> bytes:
    doc = dict(base)
    doc.update(changes)
    return json.dumps(doc).encode()


# --- the receiver -----------------------------------------------------------------


class Tracebacks(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or record.levelno >= logging.ERROR:
            self.records.append(record)


@pytest.fixture(scope="module")
def hooks(server, template_db, tmp_path_factory):
    name = server.create(template=template_db)
    url = server.url(name)
    env = {
        "TEST_FUZZ_TWILIO": TWILIO_TOKEN,
        "TEST_FUZZ_MAILGUN": MAILGUN_KEY,
        "TEST_FUZZ_POSTMARK": ":".join(POSTMARK_AUTH),
        "TEST_FUZZ_STANDARD": STANDARD_SECRET,
        "CONVDB_ATTACHMENT_DIR": str(tmp_path_factory.mktemp("attachments")),
    }
    paths = add_adapter_endpoints(
        url,
        {
            "twilio": "env:TEST_FUZZ_TWILIO",
            "mailgun": "env:TEST_FUZZ_MAILGUN",
            "postmark": "env:TEST_FUZZ_POSTMARK",
            "sendgrid": "none:",
            "standard": "env:TEST_FUZZ_STANDARD",
        },
    )
    handler = Tracebacks()
    logger = logging.getLogger("convdb")
    logger.addHandler(handler)
    with pytest.MonkeyPatch.context() as patch:
        for variable, value in env.items():
            patch.setenv(variable, value)
        app = InProcess(url, public_url=PUBLIC)
        try:
            yield {"app": app, "paths": paths, "errors": handler.records}
        finally:
            app.close()
            logger.removeHandler(handler)
            server.drop(name)


def send(hooks, adapter: str, body: bytes, sent: dict, wanted: dict) -> None:
    """POST ``body`` with the random headers ``sent`` and the ``wanted`` ones over them."""
    raw = {k: v.encode("latin-1") for k, v in sent.items() if k != "content-length"}
    raw.update({k: v.encode("latin-1") if isinstance(v, str) else v for k, v in wanted.items()})
    errors = hooks["errors"]
    errors.clear()
    answer = hooks["app"].post(hooks["paths"][adapter], body, raw)
    assert answer.status_code < 500, (answer.status_code, answer.text)
    assert errors == [], [(r.getMessage(), r.exc_info and r.exc_info[1]) for r in errors]


# Examples per adapter: the profile's (200 in CI: about half a minute for all five).
FUZZ = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TWILIO_FIELDS = [
    "MessageSid",
    "SmsSid",
    "From",
    "To",
    "Body",
    "NumMedia",
    "MediaUrl0",
    "MediaContentType0",
    "AccountSid",
]
MAILGUN_FIELDS = [
    "from",
    "sender",
    "recipient",
    "subject",
    "body-plain",
    "body-html",
    "stripped-text",
    "message-headers",
    "attachment-1",
]
SENDGRID_FIELDS = [
    "from",
    "to",
    "cc",
    "subject",
    "text",
    "html",
    "headers",
    "envelope",
    "charsets",
    "email",
    "attachment-info",
    "attachment1",
]


@FUZZ
@given(
    sent=headers,
    content_type=content_types,
    fields=form_fields(TWILIO_FIELDS),
    authentic=st.booleans(),
    junk=st.binary(max_size=200),
)
def test_twilio(hooks, sent, content_type, fields, authentic, junk):
    if authentic:
        fields = [("MessageSid", "SM" + secrets.token_hex(16)), *fields]
        url = PUBLIC + hooks["paths"]["twilio"]
        mac = twilio_adapter.signature(TWILIO_TOKEN, url, fields)
        wanted = {"content-type": "application/x-www-form-urlencoded", "x-twilio-signature": mac}
        send(hooks, "twilio", urlencode(fields).encode(), sent, wanted)
    else:
        send(
            hooks,
            "twilio",
            junk or urlencode(fields).encode(),
            sent,
            {"content-type": content_type},
        )


@FUZZ
@given(
    sent=headers,
    content_type=content_types,
    data=st.data(),
    authentic=st.booleans(),
    encoding=st.sampled_from(["form", "multipart"]),
)
def test_mailgun(hooks, sent, content_type, data, authentic, encoding):
    signed = mailgun_signed() if authentic else data.draw(form_fields(["timestamp", "token"]))
    if encoding == "form":
        fields = data.draw(form_fields(MAILGUN_FIELDS))
        message_headers = json.dumps(data.draw(documents))
        body = urlencode([*fields, ("message-headers", message_headers), *signed]).encode()
        wanted = {"content-type": "application/x-www-form-urlencoded"}
    else:
        body = data.draw(multipart(MAILGUN_FIELDS, signed))
        wanted = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
    send(hooks, "mailgun", body, sent, wanted if authentic else {"content-type": content_type})


@FUZZ
@given(
    sent=headers,
    changes=st.dictionaries(
        st.sampled_from(
            [
                "MessageID",
                "FromFull",
                "ToFull",
                "CcFull",
                "Date",
                "TextBody",
                "Headers",
                "Attachments",
                "OriginalRecipient",
                "Subject",
            ]
        )
        | text,
        documents | date_header,
        max_size=4,
    ),
    authentic=st.booleans(),
    auth=latin1,
    junk=st.binary(max_size=100),
)
def test_postmark(hooks, sent, changes, authentic, auth, junk):
    base = json.loads(fixture("postmark", "thread_reply.json"))
    base["MessageID"] = secrets.token_hex(8)
    body = junk or with_doc(base, changes)
    wanted = {"content-type": "application/json"}
    wanted["authorization"] = (
        basic(*POSTMARK_AUTH)["authorization"] if authentic else "Basic " + auth
    )
    send(hooks, "postmark", body, sent, wanted)


@FUZZ
@given(
    sent=headers,
    data=st.data(),
    charsets=st.dictionaries(st.sampled_from(SENDGRID_FIELDS), charset, max_size=4),
    raw=st.booleans(),
)
def test_sendgrid(hooks, sent, data, charsets, raw):
    extra = [("charsets", json.dumps(charsets)), ("envelope", json.dumps(data.draw(documents)))]
    if raw:
        message = f"From: a@example.com\r\nTo: b@example.com\r\nDate: {data.draw(date_header)}"
        extra.append(("email", message + "\r\n\r\n" + data.draw(text)))
    body = data.draw(multipart(SENDGRID_FIELDS, extra))
    send(
        hooks, "sendgrid", body, sent, {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
    )


@FUZZ
@given(
    sent=headers,
    event_type=st.sampled_from(["message.received", "message.sent"]) | text,
    data=documents,
    changes=st.dictionaries(
        st.sampled_from(["from", "to", "customer", "sent_at", "body", "message_id", "attachments"])
        | text,
        documents,
        max_size=3,
    ),
    authentic=st.booleans(),
    shape=st.sampled_from(["event", "data", "junk"]),
)
def test_standard(hooks, sent, event_type, data, changes, authentic, shape):
    payload = {**example(message_id=secrets.token_hex(6)), **changes}
    body = {
        "event": json.dumps({"type": event_type, "data": payload}),
        "data": json.dumps({"type": event_type, "data": data}),
        "junk": "".join(string.printable[i % 100] for i in range(50)),
    }[shape].encode()
    msg_id = "msg_" + secrets.token_hex(8)
    wanted = {"content-type": "application/json"}
    if authentic:
        wanted.update(sign(STANDARD_SECRET, msg_id, int(time.time()), body))
    send(hooks, "standard", body, sent, wanted)
