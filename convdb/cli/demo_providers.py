"""``make demo``'s provider part: one real-shaped webhook per provider adapter.

:func:`register` adds a Twilio, SendGrid, Mailgun and Postmark endpoint for
the demo customer, each with a fresh secret passed to the server in its
environment; :func:`deliver` POSTs one sample request per provider
(:mod:`convdb.serve.providers.samples`), signed where the provider signs
(Twilio, Mailgun) and with basic auth where it does not, then a Twilio
request with a forged signature. The samples have fixed ids, so running the
demo again gets "duplicate" answers.
"""

from __future__ import annotations

import secrets

from ..db import closing, connect
from ..serve import endpoints
from ..serve.providers import samples

CUSTOMER = ("acme", "Acme, Inc.")
KINDS = {"twilio": "sms", "sendgrid": "email", "mailgun": "email", "postmark": "email"}


def _secret(adapter: str) -> str:
    if adapter in ("sendgrid", "postmark"):
        return f"{adapter}:{secrets.token_urlsafe(18)}"  # basic auth: user:password
    return secrets.token_hex(16)


def register(url: str) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """``({adapter: path}, {env variable: secret}, {adapter: secret})``."""
    paths, env, by_adapter = {}, {}, {}
    with closing(connect(url, bind=False)) as db:
        for adapter, kind in KINDS.items():
            variable = f"CONVDB_DEMO_{adapter.upper()}_SECRET"
            env[variable] = by_adapter[adapter] = _secret(adapter)
            name = f"demo-{adapter}"
            endpoints.remove(db, CUSTOMER[0], name)  # an earlier run's URL
            paths[adapter] = endpoints.add(
                db,
                CUSTOMER[0],
                name,
                kind=kind,
                adapter=adapter,
                secret_ref=f"env:{variable}",
                customer_name=CUSTOMER[1],
                known_adapters=KINDS,
            ).path
    return paths, env, by_adapter


def deliver(base: str, paths: dict[str, str], by_adapter: dict[str, str], post) -> list[tuple]:
    """One request per provider, then a forged Twilio one; rows for the demo's table."""
    rows = []
    for adapter, path in paths.items():
        body, headers = samples.request(adapter, base + path, by_adapter[adapter], 1)
        status, text = post(base, path, body, headers)
        rows.append((adapter, CUSTOMER[0], _label(adapter), status, _short(text)))
    body, headers = samples.request("twilio", base + paths["twilio"], "not-the-auth-token", 2)
    status, text = post(base, paths["twilio"], body, headers)
    rows.append(("twilio forged", CUSTOMER[0], _label("twilio", 2), status, _short(text)))
    return rows


def _label(adapter: str, n: int = 1) -> str:
    return {
        "twilio": f"SM{n:032x} (MMS)",
        "sendgrid": "<sample-1@mail.example.de>",
        "mailgun": "<sample-1@mail.example.se>",
        "postmark": "00000000-...-000000000001",
    }[adapter]


def _short(text: str) -> str:
    text = text.replace('<?xml version="1.0" encoding="UTF-8"?>', "")
    return text if len(text) <= 60 else text[:57] + "..."
