"""The ``standard`` adapter: Standard Webhooks, the core's own scheme for in-house senders.

A request carries three headers:

- ``webhook-id``: the delivery's id, the same on every retry; it becomes the
  idempotency key (namespaced by the endpoint);
- ``webhook-timestamp``: Unix seconds of this attempt; refused when more
  than the tolerance (5 minutes by default) away from now;
- ``webhook-signature``: space-separated ``v1,<base64>`` entries, each an
  HMAC-SHA256 of ``{id}.{timestamp}.{raw body}`` keyed with the decoded
  secret (``whsec_<base64>``). One valid entry is enough, so a sender
  rotating its secret signs with both keys for a while. Entries of other
  versions (``v1a``, asymmetric) are skipped.

The body is ``{"type": EVENT_TYPE, "data": PAYLOAD}`` (other keys such as
``timestamp`` are allowed); a type named in the path (``/hooks/TOKEN/TYPE``)
must agree with the body's, or stands in for it. Whatever the event type,
the payload's ``customer`` must be the endpoint's customer (``{"key",
"name"}``, filled in when absent; another customer, or a ``customer`` that
is not an object, is refused), so a sender can only write its own
customer's data: the core's message handlers file the message under it, and
a plugin's handler of an event type sent through ``standard`` endpoints must
confine its writes to ``payload["customer"]["key"]`` (the example plugin
``convdb-tags`` does). The event is then accepted as every door accepts it
(:mod:`convdb.queue.acceptance`): a type no installed plugin handles, or a
payload its validator refuses (a ``message.status`` report included), gets
400 naming the field.

:func:`sign` and :func:`generate_secret` are what a sender (the demo, the
tests, the benchmarks) uses.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

from .adapters import Adapter, Delivery, Rejection, WebhookRequest, check_key
from .request import off_loop
from .secrets import SecretUnavailable

SECRET_PREFIX = "whsec_"
MAX_ID_LENGTH = 256
MAX_SIGNATURE_HEADER = 4096
MAX_SIGNATURES = 16


def decode_secret(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret (the prefix is optional)."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not key:
        raise SecretUnavailable(
            "the endpoint's secret is not a Standard Webhooks secret (whsec_ followed by base64)"
        )
    return key


def signature(key: bytes, msg_id: str, timestamp: int | str, body: bytes) -> str:
    """The base64 HMAC-SHA256 of ``{msg_id}.{timestamp}.{body}``."""
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three headers a Standard Webhooks sender sends with ``body``."""
    sig = signature(decode_secret(secret), msg_id, timestamp, body)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": f"v1,{sig}",
    }


def generate_secret(nbytes: int = 32) -> str:
    """A new random secret in the ``whsec_`` form (24 to 64 bytes, as the spec asks)."""
    if not 24 <= nbytes <= 64:
        raise ValueError("a Standard Webhooks secret has 24 to 64 bytes")
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(nbytes)).decode("ascii")


def _verified(request: WebhookRequest, key: bytes, msg_id, timestamp, body, candidates):
    """The JSON document of ``body`` if one of ``candidates`` signs it; else a 401."""
    wanted = signature(key, msg_id, timestamp, body).encode("ascii")
    if not any(hmac.compare_digest(wanted, c) for c in candidates):
        raise Rejection.unauthorized("bad_signature", "no signature matches")
    return request.json(body)


class StandardWebhooks(Adapter):
    """Standard Webhooks (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``)."""

    name = "standard"
    description = "Standard Webhooks: HMAC-SHA256 signed canonical events (in-house senders)"

    async def receive(self, request: WebhookRequest) -> Delivery:
        msg_id, timestamp, candidates = self._headers(request)
        key = decode_secret(request.secret())
        body = await request.body()
        doc = await off_loop(
            len(body), _verified, request, key, msg_id, timestamp, body, candidates
        )
        event_type, data = self._event(request, doc)
        data = scoped_to_endpoint(data, request)
        return Delivery(event_type, data, idempotency_key=msg_id)

    def _headers(self, request: WebhookRequest) -> tuple[str, str, list[bytes]]:
        headers = request.headers
        msg_id = headers.get("webhook-id")
        timestamp = headers.get("webhook-timestamp")
        header = headers.get("webhook-signature")
        if not msg_id or not timestamp or not header:
            missing = [
                name
                for name, value in (
                    ("webhook-id", msg_id),
                    ("webhook-timestamp", timestamp),
                    ("webhook-signature", header),
                )
                if not value
            ]
            raise Rejection.unauthorized("missing_signature", "missing " + ", ".join(missing))
        try:
            check_key(msg_id, "webhook-id", MAX_ID_LENGTH)
        except Rejection as exc:
            raise Rejection.unauthorized("bad_id", exc.detail) from None
        if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
            raise Rejection.unauthorized("bad_timestamp", "webhook-timestamp is not Unix seconds")
        if abs(request.now() - int(timestamp)) > request.tolerance:
            raise Rejection.unauthorized(
                "stale_timestamp",
                f"webhook-timestamp is more than {request.tolerance:g} s away from now",
            )
        if len(header) > MAX_SIGNATURE_HEADER:
            raise Rejection.unauthorized("bad_signature", "webhook-signature is too long")
        candidates = []
        for entry in header.split()[:MAX_SIGNATURES]:
            version, sep, value = entry.partition(",")
            if sep and version == "v1" and value.isascii():
                candidates.append(value.encode("ascii"))
        if not candidates:
            raise Rejection.unauthorized("bad_signature", "no v1 signature")
        return msg_id, timestamp, candidates

    def _event(self, request: WebhookRequest, doc) -> tuple[str, dict]:
        if not isinstance(doc, dict) or not isinstance(doc.get("data"), dict):
            raise Rejection.malformed(
                "bad_body", 'the body must be {"type": EVENT_TYPE, "data": {...}}'
            )
        routed = request.subpath.strip("/") or None
        event_type = doc.get("type", routed)
        if not isinstance(event_type, str):
            raise Rejection.malformed("bad_event_type", '"type" must be a string')
        if routed is not None and event_type != routed:
            raise Rejection.malformed(
                "bad_event_type", "the path names another event type than the body"
            )
        return event_type, doc["data"]


def scoped_to_endpoint(data: dict, request: WebhookRequest) -> dict:
    """``data`` with ``customer`` set to the endpoint's; a 400 when it names another."""
    endpoint = request.endpoint
    customer = data.get("customer")
    own = {"key": endpoint.customer_key, "name": endpoint.customer_name}
    if customer is None:
        return {**data, "customer": own}
    if endpoint.customer_key is None:
        raise Rejection.malformed(
            "wrong_customer", "the endpoint's customer has no key to hold events to"
        )
    if not isinstance(customer, dict) or customer.get("key") != endpoint.customer_key:
        raise Rejection.malformed(
            "wrong_customer", "the payload's customer is not this endpoint's customer"
        )
    return data


__all__ = [
    "SECRET_PREFIX",
    "StandardWebhooks",
    "decode_secret",
    "generate_secret",
    "sign",
    "signature",
]
