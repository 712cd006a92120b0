"""The ``sendgrid_events`` adapter: SendGrid's Signed Event Webhook (delivery reports).

SendGrid POSTs a JSON array of events, many per request, each with
``sg_event_id`` (the idempotency key), ``sg_message_id``, ``event`` and
``timestamp`` (Unix seconds), and signs the request: the header
``X-Twilio-Email-Event-Webhook-Signature`` holds a base64 DER ECDSA
signature (P-256, SHA-256) over the value of
``X-Twilio-Email-Event-Webhook-Timestamp`` followed by the raw body. The
endpoint's secret is the verification key that SendGrid's console shows (a
base64 DER public key). Verification is the ``cryptography`` package's.

Each event becomes its own ``message.status`` event
(:data:`~convdb.serve.providers.statuses.SENDGRID`); the message is the part
of ``sg_message_id`` before its first ``.`` (the ``X-Message-Id`` SendGrid's
send API answered). The whole batch is stored in one transaction, and the
2xx promise holds per event: an event that is not a valid report (a field
missing or of the wrong type, over a limit) is refused alone and listed in
the answer's ``refused``, with its index and reason; the others are stored.
A refused event whose ``sg_message_id`` is usable leaves a record (word
``refused``, its reason as the detail) in the history of that message, when
convdb holds it.
The whole request gets a 4xx only for a bad signature (401) or a body that
is not a JSON array of objects (400); over :data:`MAX_EVENTS` events or
:attr:`SendGridEvents.max_body` bytes it gets 413.

The timestamp is not held to the replay tolerance: SendGrid retries a batch
for up to three days, and a replayed batch only finds its events stored
(every event is keyed by its ``sg_event_id``).
"""

from __future__ import annotations

import base64
import binascii
import json
import threading

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ..adapters import Adapter, Batch, Delivery, Refused, Rejection, WebhookRequest
from ..request import off_loop
from ..secrets import SecretUnavailable
from . import statuses
from .common import digest, iso

SIGNATURE_HEADER = "x-twilio-email-event-webhook-signature"
TIMESTAMP_HEADER = "x-twilio-email-event-webhook-timestamp"
#: Most events in one request (413 above); SendGrid posts far fewer.
MAX_EVENTS = 10_000
MAX_ID = 200
MAX_SIGNATURE = 512
_KEYS: dict[str, ec.EllipticCurvePublicKey] = {}
_KEYS_LOCK = threading.Lock()


def public_key(secret: str) -> ec.EllipticCurvePublicKey:
    """The P-256 public key of a base64 DER secret (cached per secret text)."""
    with _KEYS_LOCK:
        found = _KEYS.get(secret)
    if found is not None:
        return found
    try:
        key = serialization.load_der_public_key(base64.b64decode(secret.strip(), validate=True))
    except (binascii.Error, ValueError, TypeError):
        key = None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise SecretUnavailable(
            "the endpoint's secret is not SendGrid's verification key "
            "(a base64 DER ECDSA P-256 public key)"
        )
    with _KEYS_LOCK:
        if len(_KEYS) > 100:
            _KEYS.clear()
        _KEYS[secret] = key
    return key


def verify(key: ec.EllipticCurvePublicKey, signature: str, timestamp: str, body: bytes) -> None:
    """A 401 :class:`Rejection` unless ``signature`` signs ``timestamp + body``."""
    try:
        raw = base64.b64decode(signature.strip(), validate=True)
        key.verify(raw, timestamp.encode("ascii") + body, ec.ECDSA(hashes.SHA256()))
    except (binascii.Error, ValueError, InvalidSignature):
        raise Rejection.unauthorized(
            "bad_signature", "the event webhook signature does not match"
        ) from None


def _id(event: dict, name: str) -> str:
    value = event.get(name)
    if not isinstance(value, str) or not value.strip():
        raise Rejection.malformed("bad_event", f"{name} is missing or not a string")
    if len(value) > MAX_ID or not value.isprintable():
        raise Rejection.malformed("bad_event", f"{name} is longer than {MAX_ID} or not printable")
    return value.strip()


class SendGridEvents(Adapter):
    """SendGrid's Signed Event Webhook: batches of delivery reports, ECDSA-signed."""

    name = "sendgrid_events"
    description = "SendGrid Signed Event Webhook: delivery reports (JSON batches), ECDSA P-256"
    max_body = 16 * 1024 * 1024

    async def receive(self, request: WebhookRequest) -> Batch:
        signature = request.headers.get(SIGNATURE_HEADER)
        timestamp = request.headers.get(TIMESTAMP_HEADER)
        if not signature or not timestamp:
            raise Rejection.unauthorized("missing_signature", "signature or timestamp missing")
        if len(signature) > MAX_SIGNATURE or not timestamp.isascii() or len(timestamp) > 20:
            raise Rejection.unauthorized("bad_signature", "signature or timestamp malformed")
        key = public_key(request.secret())
        body = await request.body()
        await off_loop(len(body), verify, key, signature, timestamp, body)
        doc = await off_loop(len(body), request.json, body)
        if not isinstance(doc, list) or not all(isinstance(e, dict) for e in doc):
            raise Rejection.malformed("bad_body", "the body must be a JSON array of objects")
        if len(doc) > MAX_EVENTS:
            raise Rejection.too_large(f"more than {MAX_EVENTS} events in one request")
        return await off_loop(len(body), self._batch, request, doc)

    def _batch(self, request: WebhookRequest, events: list[dict]) -> Batch:
        deliveries, indexes, refused = [], [], []
        for i, event in enumerate(events):
            try:
                deliveries.append(self._delivery(request, event))
                indexes.append(i)
            except Rejection as rejection:
                record = self._record(request, event, rejection)
                refused.append(Refused(i, rejection.reason, rejection.detail, record))
        return Batch(tuple(deliveries), tuple(refused), tuple(indexes))

    def _record(self, request: WebhookRequest, event: dict, rejection: Rejection):
        """The history's record of a refused event whose message can be named, else None."""
        try:
            message_id = _id(event, "sg_message_id").split(".", 1)[0]
            return statuses.status_delivery(
                request,
                message_id=message_id,
                word="refused",
                status=None,
                at=iso(request.now()),
                detail=f"{rejection.reason}: {rejection.detail}",
                key="refused-" + digest(json.dumps(event, sort_keys=True, default=str)),
                refused=True,
            )
        except Rejection:
            return None

    def _delivery(self, request: WebhookRequest, event: dict) -> Delivery:
        event_id = _id(event, "sg_event_id")
        message_id = _id(event, "sg_message_id").split(".", 1)[0]
        if not message_id:
            raise Rejection.malformed("bad_event", "sg_message_id has no id before its first '.'")
        word = statuses.word_of(event.get("event"))
        if not word:
            raise Rejection.malformed("bad_event", "event is missing or not a string")
        timestamp = event.get("timestamp")
        if not isinstance(timestamp, int) or isinstance(timestamp, bool):
            raise Rejection.malformed("bad_event", "timestamp is not Unix seconds")
        if not 0 <= timestamp < 253_402_300_800:  # before year 10000
            raise Rejection.malformed("bad_event", "timestamp is out of range")
        status = statuses.normalized(statuses.SENDGRID, word)
        detail = statuses.detail_of(event.get("reason"), event.get("status"), event.get("type"))
        if status is None and detail is None:
            detail = word
        return statuses.status_delivery(
            request,
            message_id=message_id,
            word=word,
            status=status,
            at=statuses.at_of(timestamp, request.now()),
            detail=detail,
            event_id=event_id,
        )


__all__ = ["MAX_EVENTS", "SendGridEvents", "public_key", "verify"]
