"""Helpers for the provider adapters' tests (no tests in here): the fixtures of
``tests/fixtures/providers``, and requests signed or authenticated the way each
provider sends them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from pathlib import Path
from urllib.parse import urlencode

from twilio.request_validator import RequestValidator

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "providers"


def fixture(provider: str, name: str) -> bytes:
    return (FIXTURES / provider / name).read_bytes()


def boundary_of(body: bytes) -> str:
    """A fixture's multipart boundary: its first line, without the leading ``--``."""
    return body.split(b"\r\n", 1)[0][2:].decode("ascii")


def multipart_headers(body: bytes, **extra: str) -> dict[str, str]:
    return {"content-type": f"multipart/form-data; boundary={boundary_of(body)}", **extra}


def with_parts(body: bytes, fields: list[tuple[str, str]]) -> bytes:
    """``body`` (a multipart fixture) with more text fields before its closing boundary."""
    boundary = boundary_of(body).encode()
    closing = b"--" + boundary + b"--\r\n"
    assert body.endswith(closing)
    added = b"".join(
        b"--"
        + boundary
        + b"\r\n"
        + f'Content-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields
    )
    return body[: -len(closing)] + added + closing


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"authorization": f"Basic {token}"}


# --- Twilio ----------------------------------------------------------------------


def twilio_params(name: str) -> list[tuple[str, str]]:
    return [tuple(pair) for pair in json.loads(fixture("twilio", name))]


def twilio_request(url: str, params: list[tuple[str, str]], token: str) -> tuple[bytes, dict]:
    """Body and headers as Twilio sends them, signed by twilio-python's own validator."""
    signature = RequestValidator(token).compute_signature(url, dict(params))
    return urlencode(params).encode(), {
        "content-type": "application/x-www-form-urlencoded",
        "x-twilio-signature": signature,
    }


# --- Mailgun ---------------------------------------------------------------------


def mailgun_signature(key: str, timestamp: int | None = None, token: str | None = None):
    """``[("timestamp", ...), ("token", ...), ("signature", ...)]`` as Mailgun signs."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    token = token or secrets.token_hex(25)
    digest = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    return [("timestamp", str(timestamp)), ("token", token), ("signature", digest)]


def mailgun_multipart(name: str, key: str, **sign) -> tuple[bytes, dict]:
    body = with_parts(fixture("mailgun", name), mailgun_signature(key, **sign))
    return body, multipart_headers(body)


def mailgun_form(name: str, key: str, **sign) -> tuple[bytes, dict]:
    base = fixture("mailgun", name).strip()
    body = base + b"&" + urlencode(mailgun_signature(key, **sign)).encode()
    return body, {"content-type": "application/x-www-form-urlencoded"}


__all__ = [
    "FIXTURES",
    "basic",
    "boundary_of",
    "fixture",
    "mailgun_form",
    "mailgun_multipart",
    "mailgun_signature",
    "multipart_headers",
    "twilio_params",
    "twilio_request",
    "with_parts",
]
