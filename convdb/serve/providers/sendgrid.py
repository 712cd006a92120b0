"""The ``sendgrid`` adapter: SendGrid Inbound Parse (``multipart/form-data``).

SendGrid POSTs each email it receives for a configured host as a form:
``from``, ``to``, ``cc``, ``subject``, ``text``, ``html``, ``headers`` (the
raw header block), ``envelope`` (JSON ``{"to": [...], "from": ...}``: the
SMTP envelope, whose first ``to`` is the customer's mailbox), ``charsets``
(JSON: the charset of each field; text in ISO-8859-1 or Shift_JIS is decoded
with it, so it arrives intact), ``attachments`` (a count),
``attachment-info`` (JSON describing ``attachment1``, ``attachment2``, ...:
file name, type) and the files themselves. With "POST the raw, full MIME
message" set, the message is in ``email`` instead of ``headers``/``text``.

SendGrid does not sign Inbound Parse. Authentication is either basic auth
(``https://user:password@host/hooks/TOKEN`` at SendGrid; the endpoint's
secret is ``user:password``) or the URL's unguessable token alone, which the
endpoint says with the secret reference ``none:``.

SendGrid sends no message id, so the idempotency key is the message's
``Message-ID`` header, else a hash of the raw message (``email``, or the
headers, bodies and envelope). SendGrid retries any answer but 2xx for up to
three days. Files are parsed as a stream straight into the attachment store;
decoding the fields (and parsing a raw MIME message) runs off the event loop.
A ``charsets`` entry that names no text encoding (``base64``, ``rot13``,
``zlib``) reads as UTF-8.
"""

from __future__ import annotations

import email.parser
import email.policy
import json

from ...attachments import (
    AttachmentTooLarge,
    Staging,
    StoredAttachment,
    clean_name,
    clean_type,
)
from ..adapters import Delivery, Rejection, WebhookRequest
from ..request import off_loop
from .common import (
    EmailAdapter,
    addresses,
    canonical,
    check_basic_auth,
    clean_text,
    digest,
    email_date,
    header,
    message_key,
    recipients,
    thread_key,
)
from .multipart import Form, read_form

TEXT_FIELDS = ("from", "to", "cc", "subject", "text", "html", "headers", "envelope")


def _json_field(form: Form, name: str) -> dict:
    raw = form.text(name, "utf-8")
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        raise Rejection.malformed("bad_body", f"{name} is not JSON") from None
    if not isinstance(value, dict):
        raise Rejection.malformed("bad_body", f"{name} is not a JSON object")
    return value


def header_items(block: str) -> list[tuple[str, str]]:
    """``(name, value)`` pairs of a raw header block, unfolded. Values stay as sent
    (encoded words too): only ids and dates are read from them, and SendGrid gives
    the decoded ``from``, ``to``, ``cc`` and ``subject`` as fields of their own."""
    parsed = email.parser.HeaderParser(policy=email.policy.compat32).parsestr(block[:1_000_000])
    return [(name, " ".join(str(value).split())) for name, value in parsed.items()[:1000]]


class SendGrid(EmailAdapter):
    """SendGrid Inbound Parse (multipart), basic auth or the path token alone."""

    name = "sendgrid"
    description = "SendGrid Inbound Parse: inbound email (multipart), basic auth or path token"
    needs_secret = False

    async def receive(self, request: WebhookRequest) -> Delivery:
        check_basic_auth(request, allow_token_only=True)
        with self.staging() as staging:
            form = await read_form(request, staging, max_field=self.max_body)
            # decoding the fields, a raw MIME message and committing files: off the loop
            raw = "email" in form.fields
            size = None if form.files or raw else request.content_length
            return await off_loop(size, self._delivery, request, form, staging)

    def _delivery(self, request: WebhookRequest, form: Form, staging: Staging) -> Delivery:
        charsets = _json_field(form, "charsets")
        texts = {
            name: form.text(
                name, charsets.get(name) if isinstance(charsets.get(name), str) else None
            )
            for name in TEXT_FIELDS
        }
        raw = form.fields.get("email")
        if raw is not None and not texts["headers"]:
            texts.update(_from_raw(raw, staging))
        headers = header_items(texts["headers"] or "")
        envelope = _json_field(form, "envelope")
        key = message_key(header(headers, "Message-ID")) or "sha256:" + digest(
            raw or b"", *(texts[name] or "" for name in TEXT_FIELDS)
        )
        sender = addresses(
            texts["from"],
            envelope.get("from") if isinstance(envelope.get("from"), str) else None,
        )
        if not sender:
            raise Rejection.malformed("bad_body", "from has no email address")
        envelope_to = envelope.get("to")
        mailbox = (
            envelope_to[0]
            if isinstance(envelope_to, list) and envelope_to and isinstance(envelope_to[0], str)
            else None
        )
        to = recipients(mailbox, addresses(texts["to"], texts["cc"]))
        if not to:
            raise Rejection.malformed("bad_body", "no recipient address")
        stored = staging.commit()
        files = len(form.files)
        info = _json_field(form, "attachment-info")
        stored = _described(stored[:files], form, info) + stored[files:]
        payload = canonical(
            request,
            message_id=key,
            **{"from": sender[0]},
            to=to,
            subject=clean_text(texts["subject"], 2000) or None,
            body=clean_text(texts["text"] or ""),
            html=clean_text(texts["html"]) or None,
            sent_at=email_date(header(headers, "Date"), request.now()),
            conversation_key=thread_key(headers),
            attachments=[s.entry() for s in stored] or None,
        )
        return Delivery("message.received", payload, idempotency_key=key)


def _described(stored: list[StoredAttachment], form: Form, info: dict) -> list[StoredAttachment]:
    """Stored files with the name and type ``attachment-info`` gives them (it may come
    after the files in the body, so it is applied once every part was read)."""
    result = []
    for (field, _), item in zip(form.files, stored, strict=True):
        described = info.get(field) if isinstance(info.get(field), dict) else {}
        name = described.get("filename") or described.get("name")
        content_type = described.get("type")
        result.append(
            StoredAttachment(
                item.url,
                item.sha256,
                item.size,
                clean_type(content_type if isinstance(content_type, str) else None)
                or item.content_type,
                clean_name(name if isinstance(name, str) else None) or item.filename,
            )
        )
    return result


def _from_raw(raw: bytes, staging: Staging) -> dict[str, str | None]:
    """The text fields of a raw MIME message ("POST the raw, full MIME message");
    its attachments go to ``staging``."""
    message = email.parser.BytesParser(policy=email.policy.default).parsebytes(raw)
    for part in message.iter_attachments():
        data = part.get_payload(decode=True)
        if isinstance(data, bytes):
            try:
                staging.begin(part.get_content_type(), part.get_filename()).write(data)
            except AttachmentTooLarge as exc:
                raise Rejection.too_large(exc.message) from None
    header_block = "".join(f"{name}: {value}\n" for name, value in message.items())
    body = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    try:
        text = body.get_content() if body is not None else None
        html_text = html.get_content() if html is not None else None
    except (LookupError, ValueError):
        text, html_text = None, None
    return {
        "headers": header_block,
        "from": str(message.get("from", "")),
        "to": str(message.get("to", "")),
        "cc": str(message.get("cc", "")),
        "subject": str(message.get("subject", "")),
        "text": text,
        "html": html_text,
    }


__all__ = ["SendGrid", "header_items"]
