"""The ``postmark`` adapter: Postmark's inbound webhook, and its delivery, bounce and
open webhooks (JSON).

Postmark POSTs one JSON document per email: ``MessageID`` (Postmark's id:
the message id and the idempotency key), ``FromFull``, ``ToFull``,
``CcFull``, ``OriginalRecipient``, ``Subject``, ``Date``, ``TextBody``,
``HtmlBody``, ``StrippedTextReply``, ``Headers`` (``[{"Name", "Value"}]``)
and ``Attachments`` (``[{"Name", "Content" (base64), "ContentType",
"ContentLength"}]``). Postmark does not sign; it authenticates with basic
auth in the webhook URL (``https://user:password@host/hooks/TOKEN``): the
endpoint's secret is ``user:password``.

Postmark retries anything but 200 for a while and stops at once on 403, so a
body that can never be accepted (malformed) is answered 403; bad
credentials get 401, so fixing the secret lets the retries through. Each
attachment is decoded into the attachment store, in slices, and the event
refers to it by its content URL. Parsing a large body, and decoding its
attachments, runs off the event loop.

A body with a ``RecordType`` is a tracking webhook about an outbound message
(``MessageID``, the id Postmark's send API answered) and becomes a
``message.status`` event (:meth:`Postmark._status`); the same basic auth.
"""

from __future__ import annotations

import base64
import binascii

from ...attachments import AttachmentTooLarge, Staging
from ..adapters import Delivery, Rejection, WebhookRequest
from ..request import off_loop
from . import statuses
from .common import (
    EmailAdapter,
    addresses,
    canonical,
    check_basic_auth,
    clean_text,
    email_date,
    header,
    key_or_digest,
    recipients,
    thread_key,
)

MAX_ATTACHMENTS = 100
SLICE = 4 * 256 * 1024  # base64 characters decoded at a time (a multiple of 4)


def _address(value) -> str | None:
    if not isinstance(value, dict):
        return None
    email_addr = value.get("Email")
    if not isinstance(email_addr, str) or not email_addr.strip():
        return None
    name = value.get("Name") if isinstance(value.get("Name"), str) else ""
    name = name.replace('"', "'").strip()
    return f'"{name}" <{email_addr.strip()}>' if name else email_addr.strip()


def _full(values) -> list[str]:
    if not isinstance(values, list):
        return []
    return [a for a in (_address(v) for v in values[:200]) if a]


class Postmark(EmailAdapter):
    """Postmark inbound (JSON), basic auth."""

    name = "postmark"
    description = "Postmark inbound email (JSON), basic auth; 403 stops its retries"
    malformed_status = 403

    async def receive(self, request: WebhookRequest) -> Delivery:
        check_basic_auth(request)
        body = await request.body()
        doc = await off_loop(len(body), request.json, body)
        # writing files never happens on the event loop, whatever their size
        files = isinstance(doc, dict) and bool(doc.get("Attachments"))
        return await off_loop(None if files else len(body), self._delivery, request, doc)

    def _delivery(self, request: WebhookRequest, doc) -> Delivery:
        if not isinstance(doc, dict):
            raise Rejection.malformed("bad_body", "the body must be a JSON object")
        if "RecordType" in doc:
            return self._status(request, doc)
        message_id = doc.get("MessageID")
        if not isinstance(message_id, str) or not message_id:
            raise Rejection.malformed("bad_body", "MessageID is missing")
        key = key_or_digest(message_id, "")
        if not key:
            raise Rejection.malformed("bad_key", "MessageID is not a usable id")
        sender = addresses(_address(doc.get("FromFull")) or _text(doc, "From"))
        if not sender:
            raise Rejection.malformed("bad_body", "FromFull has no email address")
        raw_headers = doc.get("Headers") if isinstance(doc.get("Headers"), list) else []
        headers = [
            (h["Name"], h["Value"])
            for h in raw_headers[:1000]
            if isinstance(h, dict)
            and isinstance(h.get("Name"), str)
            and isinstance(h.get("Value"), str)
        ]
        own_id = header(headers, "Message-ID")
        others = addresses(*_full(doc.get("ToFull")), *_full(doc.get("CcFull")))
        to = recipients(_text(doc, "OriginalRecipient"), others)
        if not to:
            raise Rejection.malformed("bad_body", "no recipient address")
        with self.staging() as staging:
            files = self._attachments(doc.get("Attachments"), staging)
            payload = canonical(
                request,
                message_id=message_id,
                **{"from": sender[0]},
                to=to,
                subject=clean_text(_text(doc, "Subject"), 2000) or None,
                body=clean_text(_text(doc, "TextBody") or _text(doc, "StrippedTextReply") or ""),
                html=clean_text(_text(doc, "HtmlBody")) or None,
                stripped_text=clean_text(_text(doc, "StrippedTextReply")) or None,
                sent_at=email_date(_text(doc, "Date"), request.now()),
                conversation_key=thread_key(
                    [*headers, ("message-id", own_id or f"<{message_id}>")]
                ),
                attachments=[stored.entry() for stored in staging.commit()] if files else None,
            )
        return Delivery("message.received", payload, idempotency_key=key)

    def _status(self, request: WebhookRequest, doc: dict) -> Delivery:
        """A delivery or bounce webhook: a ``message.status`` report about ``MessageID``.

        ``Delivery`` is ``delivered``, ``Open`` is ``read``; a ``Bounce`` is
        ``failed`` when its ``Type`` is permanent
        (:data:`~convdb.serve.providers.statuses.POSTMARK_PERMANENT`), else it
        only goes into the history, as ``SpamComplaint`` and unknown types do.
        """
        record = statuses.word_of(doc.get("RecordType"))
        message_id = _text(doc, "MessageID")
        if not record or not message_id or not message_id.strip():
            raise Rejection.malformed("bad_body", "RecordType and MessageID are required")
        status = statuses.normalized(statuses.POSTMARK, record)
        word, detail = record, None
        if record in ("Bounce", "SpamComplaint"):
            word = statuses.word_of(doc.get("Type")) or record
            if record == "Bounce" and word not in statuses.POSTMARK_PERMANENT:
                status = None
            detail = statuses.detail_of(doc.get("Description"), doc.get("Details"), word)
        elif status is None:
            detail = record
        when = {"Delivery": "DeliveredAt", "Bounce": "BouncedAt", "Open": "ReceivedAt"}
        at = statuses.at_of(doc.get(when.get(record, "ReceivedAt")), request.now())
        bounce_id = doc.get("ID")
        usable = isinstance(bounce_id, int | str) and not isinstance(bounce_id, bool)
        event_id = f"{record}:{bounce_id}" if usable and bounce_id else None
        return statuses.status_delivery(
            request,
            message_id=message_id.strip(),
            word=word,
            status=status,
            at=at,
            detail=detail,
            event_id=event_id,
        )

    def _attachments(self, items, staging: Staging) -> int:
        """Decode every attachment into ``staging``; how many there were."""
        if items is None:
            return 0
        if not isinstance(items, list) or len(items) > MAX_ATTACHMENTS:
            raise Rejection.malformed(
                "bad_attachment", f"Attachments: a list of at most {MAX_ATTACHMENTS}"
            )
        for i, item in enumerate(items):
            content = item.get("Content") if isinstance(item, dict) else None
            if not isinstance(content, str):
                raise Rejection.malformed("bad_attachment", f"Attachments[{i}] has no Content")
            if any(ws in content for ws in ("\n", "\r", " ", "\t")):
                content = "".join(content.split())  # line-wrapped base64
            writer = staging.begin(_text(item, "ContentType"), _text(item, "Name"))
            try:
                for at in range(0, len(content), SLICE):
                    writer.write(base64.b64decode(content[at : at + SLICE], validate=True))
            except (binascii.Error, ValueError):
                raise Rejection.malformed(
                    "bad_attachment", f"Attachments[{i}].Content is not base64"
                ) from None
            except AttachmentTooLarge as exc:
                raise Rejection.too_large(exc.message) from None
        return len(items)


def _text(doc, name: str) -> str | None:
    value = doc.get(name) if isinstance(doc, dict) else None
    return value if isinstance(value, str) else None


__all__ = ["Postmark"]
