"""The adapter interface: how one webhook request becomes one stored event.

An adapter knows one sender's scheme. The receiver routes a request to an
endpoint (the unguessable token in the path), hands the adapter a
:class:`WebhookRequest` (never a framework object), and stores the
:class:`Delivery` the adapter returns, durably, before it answers 2xx. An
adapter refuses a request by raising :class:`Rejection`::

    import hmac, hashlib
    from convdb.serve import Adapter, Delivery, Rejection

    class Acme(Adapter):
        name = "acme"
        malformed_status = 406              # what Acme documents as "do not retry"

        async def receive(self, request):
            body = await request.body()     # bounded: over the limit is a 413
            key = request.secret().encode() # read now: a rotated secret needs no restart
            given = request.headers.get("x-acme-signature", "")
            wanted = hmac.new(key, request.url.encode() + body, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(given, wanted):
                raise Rejection.unauthorized("bad_signature")
            doc = request.json(body)        # depth- and type-checked, else a 400
            return Delivery("message.received", to_canonical(doc), idempotency_key=doc["id"])

    # the plugin registers it, like the core registers "standard":
    plugin = Plugin(name="acme", adapters={"acme": "convdb_acme:Acme"})

What the receiver does around :meth:`Adapter.receive`:

- 404 before any adapter runs when the token names no endpoint; 413 when
  ``Content-Length`` is over :attr:`Adapter.max_body` (or the server's
  limit); 431 on oversized headers.
- The idempotency key is namespaced by the endpoint's provider, so two
  providers never share keys; a redelivery (same key) is answered 2xx and stored once.
- A :class:`Delivery` with a ``nonce`` (a one-time value such as Mailgun's
  ``token``) is refused as a replay when the nonce was already used by a
  delivery with another key under the same signing key (the secret this
  request read, at whatever endpoint: :mod:`convdb.serve.replay`); the nonce
  is stored in the same transaction as the event, so it is consumed exactly
  when the event is.
- The :class:`Delivery` is accepted as ``enqueue`` and the worker accept an
  event (:mod:`convdb.queue.acceptance`: the queue's limits, a handled event
  type, that type's validator), before anything is stored; a refusal is
  answered with :attr:`Adapter.malformed_status` (413 over a size limit) and
  a detail naming the field, so a 2xx is never followed by a ``dead`` event.
- :meth:`Adapter.respond` builds the 2xx answer (after the commit) and
  :meth:`Adapter.refuse` the answer to a :class:`Rejection`, so an adapter can
  speak its provider's dialect (an empty TwiML document, a 406).

Adapters are created once per server process and shared by concurrent
requests: keep per-request state in locals, not on ``self``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar

from ..exceptions import QueueError
from ..queue import limits as queue_limits
from .rejection import Rejection, check_key
from .request import (
    MAX_FORM_FIELDS,
    MAX_JSON_DEPTH,
    Endpoint,
    Headers,
    WebhookRequest,
    json_depth,
    parse_content_type,
)

#: Longest idempotency key an adapter may return (before the endpoint namespace):
#: the queue's rule for a sender's id (:func:`convdb.queue.limits.delivery_id_problem`).
MAX_KEY_LENGTH = queue_limits.DELIVERY_ID_LENGTH
MAX_NONCE_LENGTH = 256


@dataclass(frozen=True)
class Delivery:
    """What an adapter wants stored: one event for ``inbound_events``.

    ``idempotency_key`` is the sender's own id of the delivery (Standard
    Webhooks' ``webhook-id``, Twilio's ``MessageSid``); the receiver prefixes
    it with the endpoint's namespace. ``nonce`` is an optional one-time value
    remembered for ``nonce_ttl`` seconds (make it longer than the adapter's
    timestamp tolerance), per signing key: reused with another key under the
    same signing key, at any endpoint, the request is refused as a replay
    (401, ``reason="replayed"``).
    """

    event_type: str
    payload: dict
    idempotency_key: str
    nonce: str | None = None
    nonce_ttl: float = 86_400.0

    def __post_init__(self) -> None:
        try:
            queue_limits.check_event_type(self.event_type, queue_limits.configured())
        except QueueError as exc:
            raise Rejection.malformed("bad_event_type", exc.message) from None
        if not isinstance(self.payload, dict):
            raise Rejection.malformed("bad_payload", "the event payload must be a JSON object")
        check_key(self.idempotency_key, "idempotency key")
        if self.nonce is not None:
            check_key(self.nonce, "nonce", MAX_NONCE_LENGTH)
            if not 0 < float(self.nonce_ttl) <= 30 * 86_400:
                raise ValueError("nonce_ttl must be between 0 and 30 days")


@dataclass(frozen=True)
class Refused:
    """One event of a batch that will not be stored, and why (listed in the answer).

    ``record`` is an optional delivery that records the refusal (a
    ``message.status`` with ``refused: true``: a row in the history when the
    event's message is stored), stored with the batch.
    """

    index: int
    reason: str
    detail: str = ""
    record: Delivery | None = None


@dataclass(frozen=True)
class Batch:
    """What an adapter wants stored from a request carrying many events (SendGrid's
    event webhook): each delivery becomes its own queue row, all stored in one
    transaction; ``refused`` are the events it will not store, with their reasons.

    The 2xx promise holds per event: the request is answered 2xx once every
    event is stored or refused (:meth:`Adapter.respond_batch` lists both).
    """

    deliveries: tuple[Delivery, ...]
    refused: tuple[Refused, ...] = ()
    #: each delivery's index in the request's batch (default: 0, 1, 2, ...)
    indexes: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        records = [r.record for r in self.refused if r.record is not None]
        if any(d.nonce is not None for d in (*self.deliveries, *records)):
            raise ValueError("a batch's deliveries carry no nonce (sign the request instead)")
        if self.indexes is not None and len(self.indexes) != len(self.deliveries):
            raise ValueError("a batch needs one index per delivery")


@dataclass(frozen=True)
class Outcome:
    """What storing a delivery came to: ``"stored"`` or ``"duplicate"`` (already there)."""

    status: str
    endpoint: Endpoint
    idempotency_key: str


@dataclass(frozen=True)
class WebhookResponse:
    """An answer, built by an adapter and sent by the receiver."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def json(cls, status: int, document: Any, headers=()) -> WebhookResponse:
        body = json.dumps(document, separators=(",", ":")).encode()
        return cls(status, body, "application/json", tuple(headers))


class Adapter:
    """Base class of adapters; subclasses implement :meth:`receive`.

    Class attributes an adapter may set:

    ``name``
        Informational; the registry key in ``Plugin(adapters=...)`` is what
        endpoints name.
    ``description``
        One line shown by ``convdb providers adapters``.
    ``unauthorized_status`` / ``malformed_status``
        The codes for :class:`Rejection` kinds (defaults 401 and 400): a
        provider that stops retrying only on a specific code gets that code.
    ``max_body``
        Byte limit of this adapter's bodies; ``None`` uses the server's
        (``CONVDB_SERVE_MAX_BODY``). Raise it for providers that post
        attachments, and read those bodies with :meth:`WebhookRequest.stream`.
    ``needs_secret``
        False for adapters that authenticate by the path token alone.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    unauthorized_status: ClassVar[int] = 401
    malformed_status: ClassVar[int] = 400
    max_body: ClassVar[int | None] = None
    needs_secret: ClassVar[bool] = True

    async def receive(self, request: WebhookRequest) -> Delivery | Batch:
        """Authenticate and parse ``request``; a :class:`Delivery` (or a :class:`Batch`
        of them), or a :class:`Rejection`."""
        raise NotImplementedError

    def respond_batch(
        self, request: WebhookRequest, batch: Batch, outcomes: list[Outcome | Refused]
    ) -> WebhookResponse:
        """The 2xx answer to a batch, once its stored events are committed: counts, and
        each refused event with its index and reason."""
        refused = [o for o in outcomes if isinstance(o, Refused)]
        stored = sum(1 for o in outcomes if isinstance(o, Outcome) and o.status == "stored")
        return WebhookResponse.json(
            200,
            {
                "stored": stored,
                "duplicate": len(outcomes) - stored - len(refused),
                "refused": [
                    {"index": r.index, "error": r.reason, "detail": r.detail}
                    for r in sorted(refused, key=lambda r: r.index)
                ],
            },
        )

    def respond(self, request: WebhookRequest, outcome: Outcome) -> WebhookResponse:
        """The 2xx answer once ``outcome`` is committed (default: 200 with JSON)."""
        return WebhookResponse.json(200, {"status": outcome.status})

    def refuse(self, request: WebhookRequest | None, rejection: Rejection) -> WebhookResponse:
        """The answer to ``rejection`` (default: the kind's code with JSON)."""
        return WebhookResponse.json(
            self.status_for(rejection), {"error": rejection.reason, "detail": rejection.detail}
        )

    def status_for(self, rejection: Rejection) -> int:
        if rejection.status is not None:
            return rejection.status
        if rejection.kind == "unauthorized":
            return self.unauthorized_status
        if rejection.kind == "malformed":
            return self.malformed_status
        return 413


__all__ = [
    "MAX_FORM_FIELDS",
    "MAX_JSON_DEPTH",
    "MAX_KEY_LENGTH",
    "Adapter",
    "Batch",
    "Delivery",
    "Endpoint",
    "Headers",
    "Outcome",
    "Refused",
    "Rejection",
    "WebhookRequest",
    "WebhookResponse",
    "check_key",
    "json_depth",
    "parse_content_type",
]
