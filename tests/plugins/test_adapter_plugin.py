"""A webhook adapter from a third-party plugin: installed with pip, served by convdb unchanged."""

from __future__ import annotations

import textwrap

import httpx

from convdb.testing import query

from ..plugin_helpers import pip_install, plugin_env, write_plugin
from ..serve_support import ServeProcess
from ..support import run_cli

# A plugin that accepts a JSON body authenticated by a shared token header.
INIT = textwrap.dedent("""
    import hmac

    from convdb.plugins import Plugin
    from convdb.serve import Adapter, Delivery, Rejection


    class Echo(Adapter):
        name = "echo"
        description = "JSON with an X-Echo-Token header"

        async def receive(self, request):
            token = request.headers.get("x-echo-token") or ""
            if not hmac.compare_digest(token.encode(), request.secret().encode()):
                raise Rejection.unauthorized("bad_token", "X-Echo-Token does not match")
            data = request.json(await request.body())
            payload = dict(data["message"], customer={"key": request.endpoint.customer_key})
            return Delivery("message.received", payload, str(data["id"]))


    plugin = Plugin(name="echo", migrations=None, adapters={"echo": Echo})
""")


def test_a_plugins_adapter_receives_webhooks_without_changing_convdb(tmp_path, db_url):
    folder = write_plugin(tmp_path, "echo", init=INIT)
    site = pip_install(folder, tmp_path / "site")
    env = {**plugin_env(db_url, site), "ECHO_SECRET": "s3cret-token"}

    listed = run_cli("convdb", "providers", "adapters", env=env, check=True).stdout
    assert "echo" in listed and "standard" in listed
    added = run_cli(
        "convdb", "providers", "add", "acme", "echo-sms", "--kind", "sms",
        "--adapter", "echo", "--secret-ref", "env:ECHO_SECRET", env=env, check=True,
    )  # fmt: skip
    path = added.stdout.strip().splitlines()[-1]
    assert path.startswith("/")

    message = {
        "provider": {"kind": "sms", "name": "echo-sms"},
        "message_id": "echo-1",
        "from": {"address": "+14155552671"},
        "to": [{"address": "+14155550100"}],
        "body": "hello from a plugin",
        "sent_at": "2025-11-05T10:00:00Z",
    }
    with ServeProcess(db_url, env=env) as server:
        body = {"id": "echo-1", "message": message}
        forged = httpx.post(server.base_url + path, json=body, headers={"x-echo-token": "nope"})
        assert forged.status_code == 401
        assert query(db_url, "SELECT count(*) FROM inbound_events") == [(0,)]
        for _ in range(2):  # the second is a redelivery
            answer = httpx.post(
                server.base_url + path, json=body, headers={"x-echo-token": "s3cret-token"}
            )
            assert answer.status_code == 200, answer.text
    rows = query(db_url, "SELECT event_type, payload->'customer'->>'key' FROM inbound_events")
    assert rows == [("message.received", "acme")]
