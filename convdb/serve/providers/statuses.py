"""Delivery reports from providers: their words, mapped once, into ``message.status`` events.

Each provider's vocabulary is one table here (the full tables, side by
side, are in ``docs/providers/statuses.md``; a test keeps the two equal). A
word that maps to ``None`` changes nothing and is only kept in the history
(a temporary failure, ``deferred``, a spam complaint); a word no table knows
is kept the same way, with the word as ``detail``.

:func:`status_delivery` builds the canonical payload for the endpoint's
customer and provider, validates it with the canonical validation
(:func:`convdb.ingest.payload.parse_status`: what it refuses is refused
before the answer), and names its idempotency key.
"""

from __future__ import annotations

import datetime as dt

from ...exceptions import PayloadError
from ...ingest.payload import parse_status
from ..adapters import Delivery, Rejection, WebhookRequest
from .common import clean_text, digest, iso

MAX_WORD = 100
MAX_DETAIL = 500

#: Twilio's ``MessageStatus`` (``received`` and ``receiving`` are inbound messages).
TWILIO = {
    "accepted": "queued",
    "scheduled": "queued",
    "queued": "queued",
    "sending": "queued",
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "undelivered": "failed",
    "failed": "failed",
    "canceled": "failed",
    "partially_delivered": None,
}
#: Mailgun's ``event-data.event`` (``failed`` is ``failed`` only with ``severity: permanent``).
MAILGUN = {
    "accepted": "queued",
    "delivered": "delivered",
    "opened": "read",
    "failed": "failed",
    "rejected": "failed",
    "clicked": None,
    "complained": None,
    "unsubscribed": None,
    "stored": None,
}
#: Postmark's ``RecordType`` (``Bounce``: by its ``Type``, :data:`POSTMARK_PERMANENT`).
POSTMARK = {
    "Delivery": "delivered",
    "Bounce": "failed",
    "Open": "read",
    "SpamComplaint": None,
    "Click": None,
    "SubscriptionChange": None,
}
#: Postmark bounce ``Type`` values that are permanent (``failed``); every other
#: type (``SoftBounce``, ``Transient``, ``DnsError``, ``AutoResponder``, ...)
#: only goes into the history.
POSTMARK_PERMANENT = frozenset(
    {
        "HardBounce",
        "BadEmailAddress",
        "ManuallyDeactivated",
        "Blocked",
        "SpamNotification",
        "DMARCPolicy",
        "TemplateRenderingFailed",
        "Unknown",
    }
)
#: SendGrid's event webhook ``event``.
SENDGRID = {
    "processed": "queued",
    "delivered": "delivered",
    "open": "read",
    "bounce": "failed",
    "dropped": "failed",
    "deferred": None,
    "click": None,
    "spamreport": None,
    "unsubscribe": None,
    "group_unsubscribe": None,
    "group_resubscribe": None,
}


def normalized(table: dict[str, str | None], word: str) -> str | None:
    """The status a provider's ``word`` means in ``table`` (None: changes nothing)."""
    return table.get(word)


def word_of(value: object) -> str:
    """A provider's word, as short printable text (empty when absent)."""
    text = clean_text(value if isinstance(value, str) else "", MAX_WORD).strip()
    return "".join(ch for ch in text if ch.isprintable())


def detail_of(*values: object) -> str | None:
    """The first non-empty value as a detail (error code or reason), bounded."""
    for value in values:
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str) and value.strip():
            return clean_text(value.strip(), MAX_DETAIL)
    return None


def at_of(value: object, fallback: float) -> str:
    """An ISO 8601 time from Unix seconds or an ISO 8601 string; ``fallback`` (Unix
    seconds: the receipt time) when absent or unreadable."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return iso(float(value))
        except (OverflowError, OSError, ValueError):
            return iso(fallback)
    if isinstance(value, str) and value.strip():
        text = value.strip()
        try:
            parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return iso(fallback)
        if parsed.tzinfo is not None:
            return parsed.isoformat()
    return iso(fallback)


def status_delivery(
    request: WebhookRequest,
    *,
    message_id: str,
    word: str,
    status: str | None,
    at: str,
    detail: str | None = None,
    event_id: str | None = None,
    key: str | None = None,
    customer: dict | None = None,
    provider: dict | None = None,
    nonce: str | None = None,
    nonce_ttl: float = 86_400.0,
    refused: bool = False,
) -> Delivery:
    """The ``message.status`` delivery of one report, checked by the canonical validation.

    The idempotency key is ``key`` when given, else ``status:`` and the
    provider's event id, else a digest of (message, word, ``at``, detail): a
    provider's retry is stored once.
    """
    endpoint = request.endpoint
    payload = {
        "customer": customer or {"key": endpoint.customer_key, "name": endpoint.customer_name},
        "provider": provider or {"kind": endpoint.provider_kind, "name": endpoint.provider_name},
        "message_id": message_id,
        "status": status,
        "word": word or "unknown",
        "at": at,
    }
    if detail is not None:
        payload["detail"] = detail
    if event_id is not None:
        payload["event_id"] = event_id
    if refused:
        payload["refused"] = True
    try:
        parse_status(payload)
    except PayloadError as exc:
        raise Rejection.malformed("bad_payload", exc.message) from None
    if key is not None:
        key = "status:" + key
    elif event_id is not None and len(event_id) <= 200 and event_id.isprintable():
        key = "status:" + event_id
    else:
        key = "status-sha256:" + digest(message_id, payload["word"], at, detail or "")
    return Delivery(
        "message.status", payload, idempotency_key=key, nonce=nonce, nonce_ttl=nonce_ttl
    )


__all__ = [
    "MAILGUN",
    "POSTMARK",
    "POSTMARK_PERMANENT",
    "SENDGRID",
    "TWILIO",
    "at_of",
    "detail_of",
    "normalized",
    "status_delivery",
    "word_of",
]
