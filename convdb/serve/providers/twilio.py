"""The ``twilio`` adapter: Twilio Messaging's incoming SMS/MMS webhook and status callbacks.

Twilio POSTs ``application/x-www-form-urlencoded`` parameters (``MessageSid``,
``From``, ``To``, ``Body``, ``NumMedia``, ``MediaUrl{N}``,
``MediaContentType{N}``, and more it may add at any time) and signs them in
``X-Twilio-Signature``: the base64 HMAC-SHA1, keyed by the account's auth
token (the endpoint's secret), of the full URL Twilio called followed by
every POST parameter's name and value, sorted by name (values of a repeated
name sorted too). Every parameter is signed, known or not, so parameters
Twilio adds later verify and are then ignored. A request carrying
``X-Twilio-Webhooks-Signature-Settings: ...,algorithm=HMAC_SHA256`` (a
Webhooks Rule's shared key) is checked with HMAC-SHA256 instead.

The URL is the receiver's public one (``CONVDB_PUBLIC_URL``, or
``X-Forwarded-*`` from a trusted proxy; see :mod:`convdb.serve.urls`). As
Twilio's own validator does, it is tried as given, with the scheme's default
port added and with it removed; a non-default port is never dropped.

``MessageSid`` is the message id and the idempotency key; it must have
Twilio's documented form, ``SM`` or ``MM`` and 32 hex digits
(:data:`MESSAGE_SID`): names and values are signed without a separator, so a
captured ``MessageSid=SM<32 hex>`` + ``NumMedia=0`` replayed as one
``MessageSid`` of ``SM<32 hex>NumMedia0`` still verifies, and is refused
here. Media stay at Twilio: their URLs (http or https only) become the
attachments; a space or another character a URL cannot hold is
percent-encoded (a repair, not a guess: the same URL, written validly).
``From`` and ``To`` are kept as sent: one that is not a phone number is
refused (400) with the field named, by the canonical validation
(:mod:`convdb.queue.acceptance`) the worker would apply. The customer
is the one whose endpoint mapping holds the ``To`` number among the providers
that share this endpoint's secret (the same Twilio account), else the
endpoint's own customer. The answer is an empty TwiML document.

Status callbacks come to the same endpoint: a request whose
``MessageStatus`` (or older ``SmsStatus``) is anything but ``received`` is a
report about the outbound message ``MessageSid`` and becomes a
``message.status`` event (:data:`~convdb.serve.providers.statuses.TWILIO`,
``ErrorCode`` as the detail of a failure), never an inbound message. In a
status callback the customer's own number is ``From``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from urllib.parse import quote, urlsplit, urlunsplit

from ...dedup import dedup_hash, normalize_phone
from ..adapters import Adapter, Delivery, Rejection, WebhookRequest, WebhookResponse, check_key
from ..request import FORM_TYPE, off_loop
from . import statuses
from .common import canonical, clean_text, iso

MAX_MEDIA = 50
#: Twilio's documented form of a Message SID (its API's OpenAPI pattern).
MESSAGE_SID = re.compile(r"(SM|MM)[0-9a-fA-F]{32}")
# What a URL may hold as it is (RFC 3986 reserved and unreserved, and "%"
# of an existing escape); anything else is percent-encoded as UTF-8.
_URL_SAFE = ":/?#[]@!$&'()*+,;=%-._~"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_URL_AS_IS = re.compile(r"[A-Za-z0-9:/?#\[\]@!$&'()*+,;=%._~-]*")
MAX_URL = 2048
DEFAULT_PORTS = {"http": 80, "https": 443}
ALGORITHMS = {"HMAC_SHA1": hashlib.sha1, "HMAC_SHA256": hashlib.sha256}
#: ``MessageStatus``/``SmsStatus`` of an inbound message; any other is a status callback.
INBOUND_STATUSES = ("", "received", "receiving")
TWIML_EMPTY = b'<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
#: How long a ``To`` number's customer is remembered (seconds), and how many are.
CUSTOMER_TTL = 5.0
CUSTOMER_CACHE = 10_000

# The customer whose endpoint mapping holds the number, among the providers
# that use the same secret as the endpoint (one Twilio account).
CUSTOMER_OF_NUMBER = """
SELECT c.key, c.name, p.kind, p.name
  FROM endpoint_mappings m
  JOIN providers p ON p.id = m.provider_id
  JOIN customers c ON c.id = m.customer_id
 WHERE m.hash = %s AND m.normalized = %s AND m.kind IN ('sms', 'mms')
   AND p.credentials_ref = %s AND c.key IS NOT NULL
 ORDER BY c.id, p.id
 LIMIT 10
"""


def signature(token: str, url: str, params: list[tuple[str, str]], algorithm: str = "HMAC_SHA1"):
    """Twilio's signature of ``params`` POSTed to ``url`` (base64)."""
    values: dict[str, set[str]] = {}
    for name, value in params:
        values.setdefault(name, set()).add(value)
    data = url + "".join(name + value for name in sorted(values) for value in sorted(values[name]))
    mac = hmac.new(token.encode("utf-8"), data.encode("utf-8"), ALGORITHMS[algorithm])
    return base64.b64encode(mac.digest()).decode("ascii")


def url_variants(url: str) -> list[str]:
    """``url`` as given, and with its scheme's default port added or removed."""
    variants = [url]
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return variants
    default = DEFAULT_PORTS.get(parts.scheme)
    host = parts.netloc.rsplit("@", 1)[-1]
    if default is None:
        return variants
    if port is None:
        variants.append(urlunsplit(parts._replace(netloc=f"{host}:{default}")))
    elif port == default:
        variants.append(urlunsplit(parts._replace(netloc=host.rsplit(":", 1)[0])))
    return variants


def algorithm_of(settings_header: str | None) -> str:
    """The algorithm named by ``X-Twilio-Webhooks-Signature-Settings`` (HMAC_SHA1 without)."""
    for part in (settings_header or "").split(","):
        name, sep, value = part.partition("=")
        if sep and name.strip() == "algorithm" and value.strip():
            algorithm = value.strip().upper()
            if algorithm not in ALGORITHMS:
                raise Rejection.unauthorized("bad_signature", "unsupported signature algorithm")
            return algorithm
    return "HMAC_SHA1"


def _media_url(value: str | None, n: int) -> str:
    value = (value or "").strip()
    if _CONTROL.search(value):
        raise Rejection.malformed("bad_media", f"MediaUrl{n} holds a control character")
    if not _URL_AS_IS.fullmatch(value):
        value = quote(value, safe=_URL_SAFE)  # a space becomes %20: the URL Twilio meant
    try:
        parts = urlsplit(value)
    except ValueError:
        parts = None
    if not parts or parts.scheme not in ("http", "https") or not parts.hostname:
        raise Rejection.malformed("bad_media", f"MediaUrl{n} is not an http(s) URL")
    if len(value) > MAX_URL or not value.isprintable():
        raise Rejection.malformed("bad_media", f"MediaUrl{n} is too long or not printable")
    return value


def _verified(
    request: WebhookRequest, body: bytes, token: str, given: str, algorithm: str
) -> list[tuple[str, str]]:
    """The parameters of ``body`` if ``given`` signs them for the request's URL; else a 401."""
    params = request.form(body)
    given_bytes = given.strip().encode("latin-1")
    if not any(
        hmac.compare_digest(signature(token, url, params, algorithm).encode(), given_bytes)
        for url in url_variants(request.url)
    ):
        raise Rejection.unauthorized("bad_signature", "X-Twilio-Signature does not match")
    return params


class Twilio(Adapter):
    """Twilio Messaging (form-encoded SMS/MMS), ``X-Twilio-Signature``."""

    name = "twilio"
    description = (
        "Twilio Messaging: inbound SMS/MMS and status callbacks (form-encoded), X-Twilio-Signature"
    )

    def __init__(self) -> None:
        self._customers: dict[tuple[str, str], tuple[float, tuple | None]] = {}

    async def receive(self, request: WebhookRequest) -> Delivery:
        given = request.headers.get("x-twilio-signature")
        if not given:
            raise Rejection.unauthorized("missing_signature", "X-Twilio-Signature is missing")
        algorithm = algorithm_of(request.headers.get("x-twilio-webhooks-signature-settings"))
        if request.content_type != FORM_TYPE:
            raise Rejection.malformed("bad_form", "expected application/x-www-form-urlencoded")
        token = request.secret()
        body = await request.body()
        # every parameter is signed: the form is parsed first (off the loop when large)
        params = await off_loop(len(body), _verified, request, body, token, given, algorithm)
        fields: dict[str, str] = {}
        for name, value in params:
            fields.setdefault(name, value)
        sid = fields.get("MessageSid") or fields.get("SmsSid")
        check_key(sid, "MessageSid")
        if not MESSAGE_SID.fullmatch(sid):
            raise Rejection.malformed(
                "bad_message_sid", "MessageSid is not SM or MM followed by 32 hex digits"
            )
        sender, to = fields.get("From", "").strip(), fields.get("To", "").strip()
        word = fields.get("MessageStatus") or fields.get("SmsStatus") or ""
        if word.strip().lower() not in INBOUND_STATUSES:
            return await self._status(request, fields, sid, word, sender)
        if not sender or not to:
            raise Rejection.malformed("bad_body", "From and To are required")
        payload = canonical(
            request,
            message_id=sid,
            **{"from": {"address": clean_text(sender)}},
            to=[{"address": clean_text(to)}],
            body=clean_text(fields.get("Body", "")),
            sent_at=iso(request.now()),
            attachments=self._media(fields) or None,
        )
        if payload["provider"]["kind"] not in ("sms", "mms"):
            payload["provider"] = {**payload["provider"], "kind": "sms"}
        owner = await self._owner(request, to)
        if owner is not None and owner[0] != request.endpoint.customer_key:
            payload["customer"] = {"key": owner[0], "name": owner[1]}
            payload["provider"] = {"kind": owner[2], "name": owner[3]}
        return Delivery("message.received", payload, idempotency_key=sid)

    async def _status(
        self, request: WebhookRequest, fields: dict[str, str], sid: str, raw: str, sender: str
    ) -> Delivery:
        """A status callback: a ``message.status`` report about the outbound ``sid``.

        The customer's own number is ``From`` here; its owner (among the
        endpoints of this Twilio account) is the customer, as for inbound
        messages. Twilio gives no time: ``at`` is when the callback arrived.
        """
        word = statuses.word_of(raw.strip().lower())
        status = statuses.normalized(statuses.TWILIO, word)
        error = statuses.detail_of(fields.get("ErrorCode"))
        detail = error if status == "failed" and error else (None if status else word)
        customer = provider = None
        owner = await self._owner(request, sender) if sender else None
        if owner is not None and owner[0] != request.endpoint.customer_key:
            customer = {"key": owner[0], "name": owner[1]}
            provider = {"kind": owner[2], "name": owner[3]}
        kind = (provider or {}).get("kind", request.endpoint.provider_kind)
        if provider is None and kind not in ("sms", "mms"):
            provider = {"kind": "sms", "name": request.endpoint.provider_name}
        return statuses.status_delivery(
            request,
            message_id=sid,
            word=word or "unknown",
            status=status,
            at=iso(request.now()),
            detail=detail,
            key=f"{sid}:{word}:{error or ''}",
            customer=customer,
            provider=provider,
        )

    def _media(self, fields: dict[str, str]) -> list[dict]:
        raw = fields.get("NumMedia", "0").strip() or "0"
        if not raw.isdigit() or int(raw) > MAX_MEDIA:
            raise Rejection.malformed("bad_media", f"NumMedia must be 0..{MAX_MEDIA}")
        media = []
        for n in range(int(raw)):
            item = {"url": _media_url(fields.get(f"MediaUrl{n}"), n)}
            content_type = fields.get(f"MediaContentType{n}", "").strip()
            if content_type and len(content_type) <= 255:
                item["content_type"] = content_type
            media.append(item)
        return media

    async def _owner(self, request: WebhookRequest, number: str) -> tuple | None:
        """(customer key, name, provider kind, name) of the mapping holding ``number``."""
        try:
            normalized = normalize_phone(number)
        except ValueError:
            return None
        ref = request.endpoint.secret_ref or ""
        key = (ref, normalized)
        now = time.monotonic()
        cached = self._customers.get(key)
        if cached is not None and now - cached[0] < CUSTOMER_TTL:
            return cached[1]

        def lookup(conn):
            with conn.cursor() as cur:
                cur.execute(CUSTOMER_OF_NUMBER, (dedup_hash(normalized), normalized, ref))
                return cur.fetchall()

        rows = await request.read(lookup)
        owners = {row[0] for row in rows}
        owner = tuple(rows[0]) if len(owners) == 1 else None  # none, or ambiguous
        if len(self._customers) >= CUSTOMER_CACHE:
            self._customers.clear()
        self._customers[key] = (now, owner)
        return owner

    def respond(self, request, outcome) -> WebhookResponse:
        return WebhookResponse(200, TWIML_EMPTY, "text/xml")


__all__ = ["Twilio", "algorithm_of", "signature", "url_variants"]
