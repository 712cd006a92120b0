"""What the provider adapters share: canonical payloads, email headers, keys, credentials.

Every provider adapter turns its provider's request into the canonical
``message.received`` payload (``docs/queue.md``, "The canonical message event") for the
endpoint's customer, by :func:`canonical`. Email adapters find the thread
(:func:`thread_key`), the idempotency key (:func:`message_key`) and the
sending date (:func:`email_date`) in the message's headers the same way.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import hmac
import re
from collections.abc import Iterable

from ...attachments import Staging, get_store, load_attachment_settings
from ...ingest.payload import MAX_ADDRESS_BYTES
from ..adapters import MAX_KEY_LENGTH, Adapter, Rejection, WebhookRequest
from ..secrets import NO_SECRET

MAX_RECIPIENTS = 100
MAX_THREAD_KEY = 200
_MESSAGE_ID = re.compile(r"<([^<>\s]{1,900})>")


def iso(timestamp: float) -> str:
    """Unix seconds as an ISO 8601 UTC timestamp."""
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).isoformat()


def clean_text(value: object, limit: int | None = None) -> str:
    """``value`` as text PostgreSQL can store: NUL and lone surrogates replaced."""
    text = value if isinstance(value, str) else ""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    text = text.encode("utf-8", "replace").decode("utf-8")
    return text if limit is None else text[:limit]


def digest(*parts: bytes | str) -> str:
    """A SHA-256 (hex) over ``parts``, each length-prefixed so no two lists collide."""
    h = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8", "surrogatepass") if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()


def message_key(value: str | None) -> str | None:
    """An idempotency key from a Message-ID: the id without ``<>`` when it fits
    (printable ASCII, no spaces, at most 200 characters), else its SHA-256."""
    if not value:
        return None
    value = value.strip()
    match = _MESSAGE_ID.search(value)
    bare = match.group(1) if match else value
    if 0 < len(bare) <= 200 and bare.isascii() and bare.isprintable() and " " not in bare:
        return "mid:" + bare
    return "mid-sha256:" + digest(value)


def thread_key(headers: Iterable[tuple[str, str]]) -> str | None:
    """The conversation key of an email: the first id of ``References`` (the thread's
    root), else ``In-Reply-To``, else the message's own ``Message-ID``; ``None``
    without any. Long ids are replaced by their SHA-256."""
    found: dict[str, str] = {}
    for name, value in headers:
        found.setdefault(name.lower(), value or "")
    for name in ("references", "in-reply-to", "message-id"):
        match = _MESSAGE_ID.search(found.get(name, ""))
        if match:
            root = match.group(1)
            if len(root) > MAX_THREAD_KEY or not root.isprintable():
                root = "sha256:" + digest(root)
            return "email:" + root
    return None


def header(headers: Iterable[tuple[str, str]], name: str) -> str | None:
    """The first value of header ``name`` (case-insensitive)."""
    name = name.lower()
    return next((value for n, value in headers if n.lower() == name), None)


def email_date(value: str | None, fallback: float) -> str:
    """A ``Date`` header as ISO 8601 (UTC); ``fallback`` (Unix seconds: the receipt time)
    when absent, bad, or outside the years 1970-9999 once in UTC (31 Dec 9999 with a
    negative offset is in year 10000)."""
    if value:
        try:
            parsed = email.utils.parsedate_to_datetime(value.strip())
            utc = parsed.astimezone(dt.UTC) if parsed.tzinfo is not None else None
        except (TypeError, ValueError, IndexError, OverflowError):
            utc = None
        if utc is not None and 1970 <= utc.year <= 9999:
            return utc.isoformat()
    return iso(fallback)


def addresses(*values: str | None) -> list[dict]:
    """``[{"address", "name"}]`` from address header values, in order, without repeats.

    Entries without an ``@`` are skipped, and so are addresses over the canonical
    limit (:data:`convdb.ingest.payload.MAX_ADDRESS_BYTES`, UTF-8 bytes); names are
    bounded. What is kept is validated as the worker would, before the answer.
    """
    seen: set[str] = set()
    found = []
    for name, addr in email.utils.getaddresses([v for v in values if v]):
        addr = clean_text(addr).strip()
        if "@" not in addr or len(addr.encode()) > MAX_ADDRESS_BYTES or addr.lower() in seen:
            continue
        seen.add(addr.lower())
        entry = {"address": addr}
        name = clean_text(name, 200).strip()
        if name:
            entry["name"] = name
        found.append(entry)
    return found[:MAX_RECIPIENTS]


def recipients(mailbox: str | None, others: list[dict]) -> list[dict]:
    """The ``to`` list of an inbound email: the customer's mailbox first (the envelope
    recipient), then every other recipient once."""
    first = addresses(mailbox)[:1]
    if not first:
        return others
    own = first[0]["address"].lower()
    named = next((o for o in others if o["address"].lower() == own), first[0])
    return [named, *(o for o in others if o["address"].lower() != own)][:MAX_RECIPIENTS]


def canonical(request: WebhookRequest, **fields) -> dict:
    """The canonical inbound payload for the endpoint's customer and provider.

    ``fields`` are the payload's own (``message_id``, ``from``, ``to``,
    ``body``, ``sent_at``, ...); ``None`` values are left out.
    """
    endpoint = request.endpoint
    payload = {
        "customer": {"key": endpoint.customer_key, "name": endpoint.customer_name},
        "provider": {"kind": endpoint.provider_kind, "name": endpoint.provider_name},
        "direction": "inbound",
        "received_at": iso(request.now()),
    }
    payload.update({name: value for name, value in fields.items() if value is not None})
    return payload


def check_basic_auth(request: WebhookRequest, *, allow_token_only: bool = False) -> None:
    """Refuse ``request`` unless its ``Authorization: Basic`` matches the endpoint's
    secret (``user:password``). With ``allow_token_only``, an endpoint whose secret
    reference is ``none:`` is authenticated by its path token alone."""
    if allow_token_only and request.endpoint.secret_ref == NO_SECRET:
        return
    user, sep, password = request.secret().partition(":")
    if not sep:
        raise Rejection.unauthorized(
            "bad_credentials", "the endpoint's secret must be user:password for basic auth"
        )
    given = request.basic_auth()
    if given is None:
        raise Rejection.unauthorized("missing_credentials", "basic auth credentials missing")
    ok_user = hmac.compare_digest(given[0].encode(), user.encode())
    ok_password = hmac.compare_digest(given[1].encode(), password.encode())
    if not (ok_user and ok_password):
        raise Rejection.unauthorized("bad_credentials", "basic auth credentials do not match")


class EmailAdapter(Adapter):
    """Base of the adapters whose requests carry attachment bytes (email providers):
    their body limit is ``CONVDB_ATTACHMENT_MAX_MESSAGE``, read when the adapter is
    created, and :meth:`staging` collects a request's files in the store."""

    def __init__(self) -> None:
        self.settings = load_attachment_settings()
        self.max_body = self.settings.max_message

    def staging(self) -> Staging:
        return Staging(lambda: get_store(self.settings))


def key_or_digest(value: str | None, fallback: str) -> str:
    """``value`` if it is a usable idempotency key, else ``fallback``."""
    usable = value and len(value) <= MAX_KEY_LENGTH and value.isascii() and value.isprintable()
    return value if usable and " " not in value else fallback


__all__ = [
    "EmailAdapter",
    "addresses",
    "canonical",
    "check_basic_auth",
    "clean_text",
    "digest",
    "email_date",
    "header",
    "iso",
    "key_or_digest",
    "message_key",
    "recipients",
    "thread_key",
]
