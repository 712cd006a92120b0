"""The receiver's promise: a 2xx means the event becomes data (issue 16, item 1).

Every rule the worker applies for good runs before the answer: a bad field
gets the adapter's "do not retry" 4xx naming it, a field that can be repaired
without guessing is repaired, and whatever was answered 2xx is ingested by a
real worker without going ``dead``. One real ``convdb serve`` process for the
module, one endpoint per adapter.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convdb.serve.providers import samples
from convdb.testing import query

from ..provider_support import mailgun_signature, twilio_request
from ..serve_support import Sender, ServeProcess, add_adapter_endpoints, add_endpoint
from ..support import EXAMPLE, example, run_cli

pytestmark = pytest.mark.slow

PUBLIC = "https://hooks.example.com"
TWILIO_TOKEN = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
MAILGUN_KEY = "key-promise-3ax6xnjp29jd6fds4gc3"
POSTMARK_AUTH = "postmark:pm-promise-pass"
STANDARD_SECRET = "whsec_" + "cHJvbWlzZS1zZWNyZXQtZm9yLXRoZS10ZXN0cy0wMQ=="


@pytest.fixture(scope="module")
def hooks(server, template_db, tmp_path_factory):
    name = server.create(template=template_db)
    url = server.url(name)
    paths = add_adapter_endpoints(
        url,
        {
            "standard": "env:TEST_STANDARD",
            "twilio": "env:TEST_TWILIO",
            "mailgun": "env:TEST_MAILGUN",
            "postmark": "env:TEST_POSTMARK",
        },
    )
    env = {
        "TEST_STANDARD": STANDARD_SECRET,
        "TEST_TWILIO": TWILIO_TOKEN,
        "TEST_MAILGUN": MAILGUN_KEY,
        "TEST_POSTMARK": POSTMARK_AUTH,
        "CONVDB_PUBLIC_URL": PUBLIC,
        "CONVDB_ATTACHMENT_DIR": str(tmp_path_factory.mktemp("attachments")),
    }
    proc = ServeProcess(url, env=env)
    try:
        with proc.client() as client:
            yield {"url": url, "client": client, "paths": paths}
    finally:
        proc.kill()
        server.drop(name)


def drain(url: str) -> dict[str, list]:
    """Run a real worker in burst mode; ``{status: [(key, last_error)]}`` of every event."""
    run_cli("convdb", "queue-worker", "--burst", "-q", env={"DATABASE_URL": url}, check=True)
    found: dict[str, list] = {}
    for status, key, error in query(
        url, "SELECT status, idempotency_key, last_error FROM inbound_events ORDER BY id"
    ):
        found.setdefault(status, []).append((key, error))
    return found


def stored(url: str, key_like: str) -> list[dict]:
    rows = query(
        url, "SELECT payload FROM inbound_events WHERE idempotency_key LIKE %s", (key_like,)
    )
    return [row[0] for row in rows]


# --- standard -------------------------------------------------------------------------


def standard(hooks, data: dict, msg_id: str, event_type: str = "message.received"):
    sender = Sender(hooks["paths"]["standard"], STANDARD_SECRET)
    return sender.post(hooks["client"], data, msg_id=msg_id, event_type=event_type)


STANDARD_REFUSED = [
    (
        "sent_at_without_offset",
        "message.received",
        {"sent_at": "2025-11-05 11:05:00"},
        "invalid_event",
        "sent_at: no time zone",
    ),
    ("missing_body", "message.received", {"body": None}, "invalid_event", "body: missing"),
    ("no_handler", "tag.added", {}, "unknown_event_type", "unknown event type 'tag.added'"),
    (
        "bad_address",
        "message.sent",
        {"to": [{"address": "jane@[127.0.0.1]"}]},
        "invalid_event",
        "to[0].address: not an email address",
    ),
]


@pytest.mark.parametrize(
    ("name", "event_type", "change", "reason", "detail"),
    STANDARD_REFUSED,
    ids=[case[0] for case in STANDARD_REFUSED],
)
def test_standard_refuses_what_the_worker_would_kill(
    hooks, name, event_type, change, reason, detail
):
    answer = standard(hooks, example(message_id=f"std-{name}", **change), f"std_{name}", event_type)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == reason
    assert answer.json()["detail"].startswith(detail), answer.json()
    assert stored(hooks["url"], "%std_" + name) == []


def test_standard_holds_every_event_type_to_its_customer(hooks):
    """A plugin's event type (here one no plugin handles) is held to the endpoint's
    customer before anything else: another customer's is refused as such."""
    data = {"customer": {"key": "globex"}, "conversation_id": 1, "tags": ["vip"]}
    answer = standard(hooks, data, "std_scoped", "conversation.tagged")
    assert (answer.status_code, answer.json()["error"]) == (400, "wrong_customer")


# --- twilio -----------------------------------------------------------------------------


def twilio(hooks, n: int, **changes: str):
    sid = f"SM{n:032x}"
    params = dict(
        AccountSid="AC" + "0" * 32,
        MessageSid=sid,
        From="+14155550123",
        To="+12125550100",
        Body=f"promise {n}",
        NumMedia="0",
    )
    params.update(changes)
    path = hooks["paths"]["twilio"]
    body, headers = twilio_request(PUBLIC + path, list(params.items()), TWILIO_TOKEN)
    return hooks["client"].post(path, content=body, headers=headers)


def test_twilio_from_that_is_not_a_number_is_refused_naming_the_field(hooks):
    answer = twilio(hooks, 0x1001, From="hello")
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_event"
    assert answer.json()["detail"].startswith("from.address: not a phone number")


def test_twilio_media_url_with_a_space_is_percent_encoded(hooks):
    url = "https://api.twilio.com/2010-04-01/Media/ME1 copy.jpg"
    answer = twilio(hooks, 0x1002, NumMedia="1", MediaUrl0=url, MediaContentType0="image/jpeg")
    assert answer.status_code == 200, answer.text
    (payload,) = stored(hooks["url"], f"%SM{0x1002:032x}")
    assert payload["attachments"][0]["url"] == url.replace(" ", "%20")


def test_twilio_message_sid_must_have_twilios_form(hooks):
    """Names and values are signed without a separator: MessageSid=SM<32 hex> and
    NumMedia=0 sign exactly as one MessageSid of 'SM<32 hex>NumMedia0'."""
    sid = f"SM{0x1003:032x}"
    answer = twilio(hooks, 0x1003, MessageSid=sid + "NumMedia0")
    assert (answer.status_code, answer.json()["error"]) == (400, "bad_message_sid")
    assert stored(hooks["url"], f"%{sid}%") == []
    mms = twilio(hooks, 0x1004, MessageSid=f"MM{0x1004:032x}")
    assert mms.status_code == 200


# --- mailgun ----------------------------------------------------------------------------


def mailgun(hooks, n: int, sender: str):
    fields = [
        ("recipient", "support@acme.example"),
        ("sender", sender),
        ("from", sender),
        ("subject", "Hello"),
        ("body-plain", f"promise {n}"),
        ("message-headers", json.dumps([["Message-Id", f"<promise-{n}@mail.example>"]])),
        *mailgun_signature(MAILGUN_KEY, token=f"{n:050x}"),
    ]
    headers = {"content-type": "application/x-www-form-urlencoded"}
    return hooks["client"].post(
        hooks["paths"]["mailgun"], content=urlencode(fields).encode(), headers=headers
    )


@pytest.mark.parametrize(
    "sender",
    ["jane@[127.0.0.1]", '"jane doe"@example.com', "jane\u00a0doe@example.com"],
    ids=["domain_literal", "quoted_local_part", "nbsp"],
)
def test_mailgun_refuses_with_406_naming_the_field(hooks, sender):
    n = 0x2000 + len(sender) + ord(sender[1])
    answer = mailgun(hooks, n, sender)
    assert answer.status_code == 406, answer.text
    assert answer.json()["error"] == "invalid_event"
    assert answer.json()["detail"].startswith("from.address: not an email address")
    assert stored(hooks["url"], f"%promise-{n}@%") == []


# --- postmark ---------------------------------------------------------------------------


def test_postmark_refuses_with_403_naming_the_field(hooks):
    body, headers = samples.postmark_request(POSTMARK_AUTH, 0x3001)
    doc = json.loads(body)
    doc["FromFull"]["Email"] = "joao gonçalves@example.pt"
    doc["Attachments"] = []
    answer = hooks["client"].post(
        hooks["paths"]["postmark"], content=json.dumps(doc).encode(), headers=headers
    )
    assert answer.status_code == 403, answer.text
    assert answer.json()["error"] == "invalid_event"
    assert answer.json()["detail"].startswith("from.address: not an email address")


def test_every_2xx_above_becomes_data(hooks):
    """Last in the module: whatever was answered 2xx is ingested, none goes dead."""
    outcome = drain(hooks["url"])
    assert outcome.get("dead", []) == []
    assert len(outcome.get("done", [])) >= 2


# --- the property -------------------------------------------------------------------------

HOSTILE = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "",
            " ",
            "hello",
            "2025-11-05 11:05:00",
            "2025-11-05T10:00:00",
            "9999-12-31T23:59:59-01:00",
            "0001-01-01T00:00:00+01:00",
            "jane@[127.0.0.1]",
            '"jane"@example.com',
            "jane\u00a0@example.com",
            "jane@exa mple.com",
            "+1 (415) 555-0199",
            "https://files.example/a b.png",
            "ftp://files.example/a.png",
            "https://",
            "\x00",
            "\ud800",
            "x" * 600,
            "sms",
            "outbound",
            "inbound",
            "email",
        ]
    ),
    st.text(max_size=30),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.lists(st.text(max_size=5), max_size=3),
    st.dictionaries(st.sampled_from(["address", "name", "url", "key"]), st.text(max_size=10)),
)
FIELDS = [
    ("customer", "name"),
    ("provider",),
    ("provider", "kind"),
    ("provider", "name"),
    ("direction",),
    ("message_id",),
    ("from",),
    ("from", "address"),
    ("from", "name"),
    ("to",),
    ("to", 0),
    ("to", 0, "address"),
    ("subject",),
    ("body",),
    ("sent_at",),
    ("received_at",),
    ("conversation_key",),
    ("attachments",),
    ("attachments", 0),
    ("attachments", 0, "url"),
    ("attachments", 0, "content_type"),
    ("attachments", 0, "size"),
    ("attachments", 0, "filename"),
]


def broken(base: dict, path: tuple, value):
    data = copy.deepcopy(base)
    target = data
    for part in path[:-1]:
        target = target[part]
    if value is None and isinstance(target, dict):
        target.pop(path[-1], None)
    else:
        target[path[-1]] = value
    return data


@pytest.mark.one_server
def test_any_2xx_is_ingested_without_going_dead(server, template_db):
    """Hypothesis-generated canonical events, one to three fields broken, posted to a
    real server; then a real worker drains the queue: not one event goes dead, and
    every answer is 2xx or a 4xx (never a 500)."""
    name = server.create(template=template_db)
    url = server.url(name)
    secret = STANDARD_SECRET
    path = add_endpoint(url, provider_name="inhouse", secret_ref="env:TEST_STANDARD")
    base = {**copy.deepcopy(EXAMPLE), "customer": {"key": "acme", "name": "Acme"}}
    base["attachments"] = [{"url": "https://files.example/a.png", "content_type": "image/png"}]
    numbers = itertools.count()
    answers: dict[int, int] = {}
    proc = ServeProcess(url, env={"TEST_STANDARD": secret})
    try:
        with proc.client() as client:
            sender = Sender(path, secret)

            @settings(
                max_examples=300,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(
                event_type=st.sampled_from(
                    ["message.received", "message.received", "message.sent", "tag.added"]
                ),
                changes=st.lists(st.tuples(st.sampled_from(FIELDS), HOSTILE), max_size=2),
            )
            def post(event_type, changes):
                n = next(numbers)
                data = {**base, "message_id": f"prop-{n}"}
                for field, value in changes:
                    # (the parent may have been broken first)
                    with contextlib.suppress(KeyError, IndexError, TypeError):
                        data = broken(data, field, value)
                answer = sender.post(client, data, msg_id=f"prop_{n}", event_type=event_type)
                assert answer.status_code < 500, (answer.status_code, answer.text, data)
                answers[n] = answer.status_code

            post()
        assert proc.stop() == 0
        outcome = drain(url)
        dead = outcome.get("dead", [])
        assert dead == [], dead[:5]
        accepted = sum(1 for status in answers.values() if 200 <= status < 300)
        assert len(outcome.get("done", [])) == accepted > 10
        assert len(answers) - accepted > 10  # the broken fields were refused
    finally:
        proc.kill()
        server.drop(name)


# --- secrets typed in place of a reference (item 6) ------------------------------------


@pytest.mark.parametrize(
    "typed",
    ["postmark:pm-Inbound-pass", STANDARD_SECRET, "env:" + STANDARD_SECRET.rstrip("=")],
    ids=["user_password", "whsec", "env_whsec"],
)
def test_a_secret_typed_as_a_reference_is_refused_and_never_echoed(hooks, typed):
    args = ["acme", "typed", "--kind", "email", "--adapter", "standard", "--secret-ref", typed]
    env = {"DATABASE_URL": hooks["url"]}
    answer = run_cli("convdb", "providers", "add", *args, env=env)
    assert answer.returncode == 1
    assert "secret" in answer.stderr
    for part in {typed, typed.partition(":")[2] or typed, "pm-Inbound-pass", STANDARD_SECRET[6:20]}:
        assert part not in answer.stdout + answer.stderr
    assert query(hooks["url"], "SELECT count(*) FROM providers WHERE name = 'typed'") == [(0,)]


def test_the_demo_shows_the_refusal_and_no_dead_event(server):
    """The README's demo: its one bad sample is refused at the door, naming the field."""
    name = server.create()
    try:
        out = run_cli("convdb", "demo", env={"DATABASE_URL": server.url(name)}, check=True).stdout
    finally:
        server.drop(name)
    assert "demo: delivery 14 refused, nothing stored (the sender fixes it): sent_at:" in out
    assert "worker drained the queue: 23 done, 0 retried, 0 dead" in out  # statuses too
    assert "dead events" not in out
