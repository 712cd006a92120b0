"""The ``mailgun`` adapter: a Mailgun route's ``forward()`` to a URL, and event webhooks.

Mailgun POSTs the parsed email as ``application/x-www-form-urlencoded``, or
as ``multipart/form-data`` when it has attachments (``attachment-1``,
``attachment-2``, ... as files): ``sender`` (the SMTP MAIL FROM), ``from``,
``recipient`` (the SMTP RCPT TO: the customer's mailbox), ``subject``,
``body-plain``, ``body-html``, ``stripped-text``, ``message-headers`` (a JSON
list of ``[name, value]``), and the signature fields ``timestamp``,
``token`` and ``signature``.

``signature`` must be the hex HMAC-SHA256 of ``timestamp`` + ``token``, keyed
by the webhook signing key (the endpoint's secret). A timestamp more than
``CONVDB_SERVE_TOLERANCE`` seconds away from now is refused, and so is a
``token`` already used by another message (the receiver keeps tokens as
nonces, consumed with the event). The idempotency key is the message's
``Message-Id`` header (a hash of the message when it has none).

Mailgun retries every answer but 200 and 406 for hours: a body that can
never be accepted is answered 406. A forged or stale request gets 401.
Attachment files go to the attachment store only once the signature checks
out; a refused request leaves none behind.

A form-encoded body (Mailgun's encoding without attachments) is at most
``CONVDB_SERVE_MAX_FORM_BODY`` bytes (413 above), and its signature is
checked before the rest is decoded: the signed fields are found in the raw
bytes, so a forged body costs one scan, not a parse. In a multipart body the
signature may come after the files, which are therefore staged and kept only
once it checks out; when the store cannot be written, a forged request still
gets its 401 and an authentic one 503. Parsing a large body runs off the
event loop.

An ``application/json`` body is an event webhook (``{"signature":
{"timestamp", "token", "signature"}, "event-data": {...}}``), signed the same
way with the same key: a ``message.status`` report
(:data:`~convdb.serve.providers.statuses.MAILGUN`; ``failed`` counts only
with ``severity: permanent``) keyed by ``event-data.id``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from urllib.parse import unquote_plus

from ...attachments import Staging
from ..adapters import Delivery, Rejection, WebhookRequest
from ..request import FORM_TYPE, off_loop
from . import statuses
from .common import (
    EmailAdapter,
    addresses,
    canonical,
    clean_text,
    digest,
    email_date,
    header,
    message_key,
    recipients,
    thread_key,
)
from .multipart import Form, read_form

MAX_TOKEN = 256
#: What identifies a message without a Message-Id (the same on every retry).
HASHED_FIELDS = ("message-headers", "from", "recipient", "subject", "body-plain", "body-html")
SIGNED_FIELDS = ("timestamp", "token", "signature")


def signature(key: str, timestamp: str, token: str) -> str:
    """Mailgun's signature: hex HMAC-SHA256 of ``timestamp + token``."""
    return hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()


def form_field(body: bytes, name: str) -> str | None:
    """The first value of field ``name`` of a form-encoded ``body``, found without
    parsing the rest (two scans in C); None when absent or not ASCII."""
    key = name.encode("ascii") + b"="
    if body.startswith(key):
        start = len(key)
    else:
        at = body.find(b"&" + key)
        if at < 0:
            return None
        start = at + 1 + len(key)
    end = body.find(b"&", start)
    raw = body[start : end if end >= 0 else len(body)]
    if len(raw) > 4 * MAX_TOKEN or not raw.isascii():
        return None
    return unquote_plus(raw.decode("ascii"), errors="replace")


class Mailgun(EmailAdapter):
    """Mailgun routes (form-encoded or multipart), signed with the webhook signing key."""

    name = "mailgun"
    description = "Mailgun routes: inbound email (form or multipart), HMAC-SHA256 signature"
    malformed_status = 406

    async def receive(self, request: WebhookRequest) -> Delivery:
        if request.content_type == "application/json":
            return await self._event(request)
        with self.staging() as staging:
            if request.content_type == FORM_TYPE:
                form, token = await self._signed_form(request)
            elif request.content_type == "multipart/form-data":
                form = await read_form(request, staging, store_errors="keep")
                token = self._verify(request, *(form.text(n) for n in SIGNED_FIELDS))
                form.check_store()  # an authentic request the store cannot take: 503
            else:
                raise Rejection.malformed(
                    "bad_form", "expected application/x-www-form-urlencoded or multipart/form-data"
                )
            size = None if form.files else request.content_length  # files: never on the loop
            return await off_loop(size, self._delivery, request, form, token, staging)

    async def _signed_form(self, request: WebhookRequest) -> tuple[Form, str]:
        """A form-encoded body, its signature checked before the rest is decoded."""
        body = await request.body()
        signed = await off_loop(len(body), lambda: [form_field(body, n) for n in SIGNED_FIELDS])
        token = self._verify(request, *signed)
        form = Form()
        for name, value in await off_loop(len(body), request.form, body):
            form.fields.setdefault(name, value.encode("utf-8"))
        if [form.text(n) for n in SIGNED_FIELDS] != signed:
            raise Rejection.unauthorized("bad_signature", "the signed fields are ambiguous")
        return form, token

    def _delivery(
        self, request: WebhookRequest, form: Form, token: str, staging: Staging
    ) -> Delivery:
        headers = self._headers(form)
        message_id = header(headers, "Message-Id")
        key = message_key(message_id) or "sha256:" + digest(
            *(form.fields.get(n, b"") for n in HASHED_FIELDS)
        )
        sender = addresses(form.text("from"), form.text("sender"))
        if not sender:
            raise Rejection.malformed("bad_body", "from has no email address")
        others = addresses(header(headers, "To"), header(headers, "Cc"))
        to = recipients(form.text("recipient"), others)
        if not to:
            raise Rejection.malformed("bad_body", "recipient is missing")
        stored = staging.commit()
        payload = canonical(
            request,
            message_id=key,
            **{"from": sender[0]},
            to=to,
            subject=clean_text(form.text("subject"), 2000) or None,
            body=clean_text(form.text("body-plain") or form.text("stripped-text") or ""),
            html=clean_text(form.text("body-html")) or None,
            stripped_text=clean_text(form.text("stripped-text")) or None,
            sent_at=email_date(header(headers, "Date"), request.now()),
            conversation_key=thread_key(headers),
            attachments=[s.entry() for s in stored] or None,
        )
        ttl = max(86_400.0, 2 * request.tolerance)
        return Delivery(
            "message.received", payload, idempotency_key=key, nonce=token, nonce_ttl=ttl
        )

    async def _event(self, request: WebhookRequest) -> Delivery:
        """An event webhook: ``{"signature": {...}, "event-data": {...}}``, signed with
        the same key; a ``message.status`` report about the message whose
        ``Message-Id`` is ``event-data.message.headers.message-id``."""
        body = await request.body()
        doc = await off_loop(len(body), request.json, body)
        sign = doc.get("signature") if isinstance(doc, dict) else None
        if not isinstance(sign, dict):
            raise Rejection.unauthorized("missing_signature", "the signature object is missing")
        signed = [sign.get(n) if isinstance(sign.get(n), str) else None for n in SIGNED_FIELDS]
        token = self._verify(request, *signed)
        data = doc.get("event-data")
        if not isinstance(data, dict):
            raise Rejection.malformed("bad_body", "event-data must be an object")
        message = data.get("message") if isinstance(data.get("message"), dict) else {}
        headers = message.get("headers") if isinstance(message.get("headers"), dict) else {}
        message_id = headers.get("message-id")
        if not isinstance(message_id, str) or not message_id.strip("<> \t"):
            raise Rejection.malformed("bad_body", "event-data.message.headers.message-id missing")
        word = statuses.word_of(data.get("event"))
        status = statuses.normalized(statuses.MAILGUN, word)
        severity = statuses.word_of(data.get("severity"))
        delivery = data.get("delivery-status")
        delivery = delivery if isinstance(delivery, dict) else {}
        detail = statuses.detail_of(delivery.get("code"), data.get("reason"))
        if word == "failed":
            if severity != "permanent":
                status = None
            word = f"failed:{severity or 'unknown'}"
        if status is None and detail is None:
            detail = word or None
        event_id = data.get("id") if isinstance(data.get("id"), str) and data["id"] else None
        ttl = max(86_400.0, 2 * request.tolerance)
        return statuses.status_delivery(
            request,
            message_id=message_id.strip().strip("<>"),
            word=word or "unknown",
            status=status,
            at=statuses.at_of(data.get("timestamp"), request.now()),
            detail=detail,
            event_id=event_id,
            nonce=token,
            nonce_ttl=ttl,
        )

    def _verify(
        self, request: WebhookRequest, timestamp: str | None, token: str | None, given: str | None
    ) -> str:
        """The token of a correctly signed, fresh request; else a 401 Rejection."""
        timestamp, token, given = timestamp or "", token or "", given or ""
        if not timestamp or not token or not given:
            raise Rejection.unauthorized(
                "missing_signature", "timestamp, token or signature missing"
            )
        if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
            raise Rejection.unauthorized("bad_timestamp", "timestamp is not Unix seconds")
        if len(token) > MAX_TOKEN or not token.isascii() or not token.isprintable() or " " in token:
            raise Rejection.unauthorized("bad_token", "token is not a printable ASCII string")
        wanted = signature(request.secret(), timestamp, token)
        if not hmac.compare_digest(wanted.encode(), given.strip().lower().encode("utf-8")):
            raise Rejection.unauthorized("bad_signature", "signature does not match")
        if abs(request.now() - int(timestamp)) > request.tolerance:
            raise Rejection.unauthorized(
                "stale_timestamp", f"timestamp is more than {request.tolerance:g} s away from now"
            )
        return token

    def _headers(self, form: Form) -> list[tuple[str, str]]:
        raw = form.text("message-headers")
        if not raw:
            return []
        try:
            items = json.loads(raw)
        except ValueError:
            raise Rejection.malformed("bad_body", "message-headers is not JSON") from None
        if not isinstance(items, list):
            raise Rejection.malformed("bad_body", "message-headers is not a list")
        return [
            (item[0], item[1])
            for item in items[:1000]
            if isinstance(item, list)
            and len(item) == 2
            and isinstance(item[0], str)
            and isinstance(item[1], str)
        ]


__all__ = ["Mailgun", "form_field", "signature"]
