"""``convdb serve`` as a real process, answering a real HTTP client, on real PostgreSQL."""

from __future__ import annotations

import base64
import concurrent.futures
import json
import time

import pytest
from standardwebhooks import Webhook

from convdb.serve.standard import generate_secret, signature
from convdb.testing import query, scalar

from ..serve_support import Sender, ServeProcess, add_endpoint, serving
from ..support import example, run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def receiver(server, template_db, tmp_path_factory):
    """One server for this module's request tests, on a database of its own.

    Two endpoints: ``env`` (secret in the environment) and ``file`` (secret in
    a file the tests rewrite to rotate it).
    """
    name = server.create(template=template_db)
    url = server.url(name)
    secret_file = tmp_path_factory.mktemp("secrets") / "acme-file"
    secret_file.write_text(generate_secret() + "\n")
    env_secret = generate_secret()
    env_path = add_endpoint(url, provider_name="env-signed")
    file_path = add_endpoint(url, provider_name="file-signed", secret_ref=f"file:{secret_file}")
    proc = ServeProcess(url, env={"CONVDB_TEST_SECRET": env_secret})
    try:
        yield {
            "url": url,
            "proc": proc,
            "env": Sender(env_path, env_secret),
            "file": Sender(file_path, secret_file.read_text().strip()),
            "secret_file": secret_file,
        }
    finally:
        proc.kill()
        server.drop(name)


def count(url: str, key_like: str = "%") -> int:
    return scalar(
        url, "SELECT count(*) FROM inbound_events WHERE idempotency_key LIKE %s", (key_like,)
    )


def test_accepted_duplicate_and_forged(receiver):
    url, sender = receiver["url"], receiver["env"]
    body, headers = sender.request(example(message_id="m-accept"), msg_id="msg_accept")
    with receiver["proc"].client() as client:
        first = client.post(sender.path, content=body, headers=headers)
        again = client.post(sender.path, content=body, headers=headers)
        forged = dict(
            headers, **{"webhook-signature": "v1," + base64.b64encode(b"x" * 32).decode()}
        )
        refused = client.post(
            sender.path,
            content=body.replace(b"m-accept", b"m-forged"),
            headers=dict(headers, **{"webhook-id": "msg_forged"}),
        )
        forged_answer = client.post(sender.path, content=body, headers=forged)
    assert (first.status_code, first.json()) == (200, {"status": "stored"})
    assert (again.status_code, again.json()) == (200, {"status": "duplicate"})
    assert refused.status_code == 401 and refused.json()["error"] == "bad_signature"
    assert forged_answer.status_code == 401
    rows = query(
        url,
        "SELECT event_type, idempotency_key, payload->'customer'->>'key' "
        "FROM inbound_events WHERE idempotency_key LIKE '%msg_accept'",
    )
    assert len(rows) == 1 and rows[0][0] == "message.received"
    assert rows[0][1].startswith("hook:") and rows[0][2] == "acme"
    assert count(url, "%msg_forged") == 0
    log = receiver["proc"].output
    assert "401 rejected bad_signature endpoint=acme/env-signed" in log
    assert sender.path not in log and sender.secret not in log


def test_signed_by_the_reference_library_and_rotated_keys(receiver):
    """A sender using the standardwebhooks package; several signatures, one valid."""
    url, sender = receiver["url"], receiver["env"]
    body = json.dumps({"type": "message.received", "data": example(message_id="m-lib")}).encode()
    now = int(time.time())
    lib_sig = Webhook(sender.secret).sign("msg_lib", _utc(now), body.decode())
    old_key = base64.b64decode(generate_secret().removeprefix("whsec_"))
    rotated = f"v1,{signature(old_key, 'msg_lib', now, body)} v1a,ZmFrZQ== {lib_sig}"
    only_old = f"v1,{signature(old_key, 'msg_lib2', now, body)}"
    with receiver["proc"].client() as client:
        ok = client.post(
            sender.path,
            content=body,
            headers={
                "webhook-id": "msg_lib",
                "webhook-timestamp": str(now),
                "webhook-signature": rotated,
            },
        )
        old = client.post(
            sender.path,
            content=body,
            headers={
                "webhook-id": "msg_lib2",
                "webhook-timestamp": str(now),
                "webhook-signature": only_old,
            },
        )
    assert ok.status_code == 200, ok.text
    assert old.status_code == 401
    assert count(url, "%msg_lib") == 1 and count(url, "%msg_lib2") == 0


def test_a_secret_rotated_in_its_file_is_used_without_a_restart(receiver):
    url, sender, secret_file = receiver["url"], receiver["file"], receiver["secret_file"]
    new_secret = generate_secret()
    with receiver["proc"].client() as client:
        before = sender.post(client, example(message_id="m-rot-1"), msg_id="msg_rot1")
        secret_file.write_text(new_secret)
        stale = sender.post(client, example(message_id="m-rot-2"), msg_id="msg_rot2")
        fresh = sender.post(
            client, example(message_id="m-rot-3"), msg_id="msg_rot3", secret=new_secret
        )
    assert (before.status_code, stale.status_code, fresh.status_code) == (200, 401, 200)
    assert count(url, "%msg_rot_") == 2


BAD = [
    # (name, how to spoil the request, status, reason)
    ("stale", dict(timestamp=int(time.time()) - 301), 401, "stale_timestamp"),
    ("future", dict(timestamp=int(time.time()) + 3600), 401, "stale_timestamp"),
    ("not_json", dict(body=b"{not json"), 400, "bad_json"),
    ("no_data", dict(body=b'{"type": "message.received"}'), 400, "bad_body"),
    ("array", dict(body=b"[1, 2]"), 400, "bad_body"),
    (
        "deep",
        dict(body=b'{"type":"x","data":' + b'{"a":' * 100 + b"1" + b"}" * 101),
        400,
        "bad_json",
    ),
    ("nan", dict(body=b'{"type":"x","data":{"a":NaN}}'), 400, "bad_json"),
    ("latin1", dict(body=b'{"type":"x","data":{"a":"\xe9"}}'), 400, "bad_json"),
    ("bad_type", dict(event_type="no spaces allowed"), 400, "bad_event_type"),
    ("other_customer", dict(event_type="message.received"), 400, "wrong_customer"),
    ("nul", dict(body=b'{"type":"x","data":{"a":"\\u0000"}}'), 400, "bad_payload"),
]


@pytest.mark.parametrize(("name", "change", "status", "reason"), BAD, ids=[b[0] for b in BAD])
def test_bad_deliveries_are_refused_and_nothing_is_stored(receiver, name, change, status, reason):
    url, sender = receiver["url"], receiver["env"]
    data = (
        example(customer={"key": "someone-else", "name": "X"})
        if name == "other_customer"
        else example()
    )
    msg_id = f"msg_bad_{name}"
    with receiver["proc"].client() as client:
        answer = sender.post(client, data, msg_id=msg_id, **change)
    assert (answer.status_code, answer.json()["error"]) == (status, reason)
    assert count(url, f"%{msg_id}") == 0


def test_bad_requests_before_any_adapter(receiver):
    url, sender = receiver["url"], receiver["env"]
    body, headers = sender.request(example(), msg_id="msg_pre")
    with receiver["proc"].client() as client:
        missing = client.post(
            sender.path,
            content=body,
            headers={k: v for k, v in headers.items() if k != "webhook-signature"},
        )
        unknown = client.post("/hooks/" + "A" * 43, content=body, headers=headers)
        garbage = client.post("/hooks/../../etc", content=body, headers=headers)
        too_big = client.post(sender.path, content=b"x" * (1024 * 1024 + 1), headers=headers)
        chunked = client.post(sender.path, content=iter([b"x" * 700_000] * 2), headers=headers)
        huge_headers = client.post(
            sender.path, content=body, headers=dict(headers, **{"x-pad": "p" * 20_000})
        )
        long_id = sender.post(client, example(), msg_id="m" * 300)
        get = client.get(sender.path)
    assert (missing.status_code, missing.json()["error"]) == (401, "missing_signature")
    assert (unknown.status_code, unknown.json()["error"]) == (404, "unknown_endpoint")
    assert garbage.status_code == 404
    assert (too_big.status_code, chunked.status_code) == (413, 413)
    assert huge_headers.status_code == 431
    assert (long_id.status_code, long_id.json()["error"]) == (401, "bad_id")
    assert get.status_code == 405
    assert count(url, "%msg_pre") == 0


def test_one_bad_row_costs_its_group_nothing(receiver):
    """Concurrent deliveries share group commits; a bad one fails alone (a row
    PostgreSQL itself refuses: tests/db/test_serve_groupcommit.py)."""
    url, sender = receiver["url"], receiver["env"]
    requests = [
        sender.request(example(message_id=f"m-grp-{i}"), msg_id=f"msg_grp_{i}") for i in range(40)
    ]
    bad = b'{"type":"x","data":{"a":"\\u0000"}}'
    requests[20] = sender.request({}, msg_id="msg_grp_bad", body=bad)
    with receiver["proc"].client() as client, concurrent.futures.ThreadPoolExecutor(20) as pool:
        answers = list(
            pool.map(lambda r: client.post(sender.path, content=r[0], headers=r[1]), requests)
        )
    statuses = [a.status_code for a in answers]
    assert statuses[20] == 400 and statuses.count(200) == 39
    assert count(url, "%msg_grp_%") == 39


def test_healthz_and_metrics(receiver):
    with receiver["proc"].client() as client:
        health = client.get("/healthz")
        text = client.get("/metrics").text
    assert health.status_code == 200
    assert 'convdb_webhooks_total{endpoint="acme/env-signed",outcome="accepted",reason=""}' in text
    assert 'outcome="rejected",reason="bad_signature"' in text
    assert (
        'convdb_webhooks_total{endpoint="-",outcome="rejected",reason="unknown_endpoint"}' in text
    )
    assert "convdb_webhook_duration_seconds_bucket" in text
    pending = scalar(
        receiver["url"], "SELECT count(*) FROM inbound_events WHERE status = 'pending'"
    )
    assert f"convdb_queue_depth {float(pending)}" in text


def test_providers_cli_prints_the_path_last_and_never_stores_the_token(db_url):
    env = {"DATABASE_URL": db_url}
    added = run_cli(
        "convdb",
        "providers",
        "add",
        "globex",
        "mailer",
        "--kind",
        "email",
        "--adapter",
        "standard",
        "--secret-ref",
        "env:GLOBEX_SECRET",
        "--customer-name",
        "Globex",
        env=env,
        check=True,
    )
    path = added.stdout.splitlines()[-1]
    assert path.startswith("/hooks/") and len(path) > 40
    token = path.removeprefix("/hooks/")
    dump = json.dumps(query(db_url, "SELECT * FROM webhook_endpoints"), default=str)
    assert token not in dump and token[:6] in dump
    assert query(
        db_url,
        "SELECT c.name, p.kind, p.credentials_ref FROM providers p "
        "JOIN customers c ON c.id = p.customer_id",
    ) == [("Globex", "email", "env:GLOBEX_SECRET")]
    listed = run_cli("convdb", "providers", "list", env=env, check=True).stdout
    assert "globex" in listed and token not in listed and f"/hooks/{token[:6]}..." in listed

    def add(name: str, adapter: str, ref: str):
        args = ["globex", name, "--kind", "email", "--adapter", adapter, "--secret-ref", ref]
        return run_cli("convdb", "providers", "add", *args, env=env)

    typo = add("m2", "standrad", "env:X")
    assert typo.returncode == 1 and "no webhook adapter named 'standrad'" in typo.stderr
    bad_ref = add("m2", "standard", "whsec_abc")
    assert bad_ref.returncode == 1 and "must start with env: or file:" in bad_ref.stderr
    assert "whsec_abc" not in bad_ref.stderr[bad_ref.stderr.index("must") :]
    removed = run_cli("convdb", "providers", "remove", "globex", "mailer", env=env, check=True)
    assert "removed 1 endpoint" in removed.stdout
    assert scalar(db_url, "SELECT count(*) FROM webhook_endpoints") == 0


def test_end_to_end_post_worker_views(db_url):
    server, sender = serving(db_url)
    with server:
        with server.client() as client:
            answers = [
                sender.post(client, example(message_id="e2e-1", conversation_key="t-1")),
                sender.post(
                    client,
                    example(
                        message_id="e2e-2",
                        conversation_key="t-1",
                        sent_at="2025-11-05T11:00:00+02:00",
                    ),
                ),
            ]
        assert [a.status_code for a in answers] == [200, 200]
        assert server.stop() == 0
    run_cli("convdb", "queue-worker", "--burst", "-q", env={"DATABASE_URL": db_url}, check=True)
    assert query(db_url, "SELECT status, count(*) FROM inbound_events GROUP BY 1") == [("done", 2)]
    overview = query(db_url, "SELECT message_count, participant_count FROM conversation_overview")
    assert overview == [(2, 2)]
    bodies = query(db_url, "SELECT body_text FROM conversation_messages ORDER BY sent_at")
    assert bodies == [("Hello,   we need help\n",), ("Hello,   we need help\n",)]


def _utc(seconds: int):
    import datetime as dt

    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC)


def test_the_queue_limits_hold_at_the_receiver(db_url):
    """An event the worker would refuse for a queue limit is never acknowledged:
    413 over CONVDB_MAX_PAYLOAD_BYTES, 400 past CONVDB_MAX_PAYLOAD_DEPTH, each
    naming the setting, nothing stored; an event within the limits is stored."""
    limits = {"CONVDB_MAX_PAYLOAD_BYTES": "4096", "CONVDB_MAX_PAYLOAD_DEPTH": "6"}
    server, sender = serving(db_url, env=limits)
    nested: dict = {"x": 1}
    for _ in range(8):
        nested = {"n": nested}
    with server, server.client() as client:
        big = sender.post(client, example(message_id="big", body="b" * 5000), msg_id="msg_big")
        deep = sender.post(client, example(message_id="deep", extra=nested), msg_id="msg_deep")
        fits = sender.post(client, example(message_id="fits", body="b" * 3000), msg_id="msg_fits")
    assert (big.status_code, big.json()["error"]) == (413, "too_large")
    assert "CONVDB_MAX_PAYLOAD_BYTES" in big.json()["detail"]
    # refused on the body's text, before it is parsed (the same limit, one level for
    # the envelope {"type", "data"})
    assert (deep.status_code, deep.json()["error"]) == (400, "bad_json")
    assert "CONVDB_MAX_PAYLOAD_DEPTH" in deep.json()["detail"]
    assert fits.status_code == 200
    assert count(db_url) == count(db_url, "%msg_fits") == 1
