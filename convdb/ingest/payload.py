"""Validation of canonical payloads into :class:`CanonicalMessage`.

The format is in ``docs/queue.md`` ("The canonical message event") and
``docs/ingestion.md``. :func:`parse_message` checks every field before any
SQL runs, and raises :class:`~convdb.exceptions.PayloadError` naming the
first bad one (``sent_at: ...``, ``to[1].address: ...``): a permanent failure,
the event goes ``dead`` at once. Whatever passes here fits the schema: texts
hold no NUL or lone surrogate, timestamps are aware and within range, every
value that goes into a unique index is short enough for it, addresses are
well formed and attachment URLs are ``http(s)`` or the attachment store's.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import urlsplit

from .. import attachments as store
from .. import dedup
from ..exceptions import PayloadError

__all__ = [
    "EVENT_TYPES",
    "STATUSES",
    "Address",
    "CanonicalMessage",
    "StatusReport",
    "parse_event",
    "parse_message",
    "parse_status",
    "validate_received",
    "validate_sent",
    "validate_status",
]

EVENT_TYPES = ("message.received", "message.sent", "message.status")
#: A message's delivery statuses, in rank order: its status is the highest
#: rank among its reports (``docs/status.md``).
STATUSES = ("queued", "sent", "delivered", "failed", "read")
#: A provider's own word or error code (``detail``, ``word``), in characters.
MAX_DETAIL = 500
MESSAGE_KINDS = ("email", "sms", "mms")
#: Keys (``customer.key``, ``provider.name``, ``message_id``, ``conversation_key``)
#: go into unique indexes, whose entries must stay under ~2.7 KB: 500
#: characters are at most 2,000 bytes.
MAX_KEY = 500
#: An address, in UTF-8 bytes once normalized (SMTP allows 64 + 1 + 255
#: octets). The conversation's thread key holds two of them, so it stays far
#: below the index limit, compressible or not.
MAX_ADDRESS_BYTES = 320
MAX_URL = 2048
#: An attachment's file name is cut to this many characters (``attachments.filename``).
MAX_FILENAME = 255
# Besides digits, ASCII letters (1-800-FLOWERS, "ext") and whitespace, what
# written phone numbers hold, tel: URIs (RFC 3966) included.
_PHONE_PUNCTUATION = frozenset("+-.()/:;=#*,")
# Unicode category Cc, exactly.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
# Whitespace and the RFC 5322 "specials", never unquoted in an address
# (quoted local parts are refused); then the common, all-ASCII cases of the
# checks below, in one match each.
_LOCAL_PART_REFUSED = re.compile(r'[\s()<>\[\]:;@\\,"]')
_ASCII_DOMAIN = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*")
_ASCII_PHONE = re.compile(r"[0-9A-Za-z \t+\-.()/:;=#*,]*")
# What str.isspace() calls whitespace (re's \s on str is the same test), found in C.
_WHITESPACE = re.compile(r"\s")


@dataclass(frozen=True)
class Address:
    raw: str
    normalized: str
    name: str | None = None


@dataclass(frozen=True)
class CanonicalMessage:
    """A validated canonical payload; timestamps are aware (UTC), addresses normalized."""

    customer_key: str
    customer_name: str
    provider_kind: str
    provider_name: str
    direction: str
    message_id: str
    sender: Address
    recipients: tuple[Address, ...]
    subject: str | None
    body: str
    sent_at: dt.datetime
    received_at: dt.datetime | None
    conversation_key: str | None
    # url, content type, bytes, file name
    attachments: tuple[tuple[str, str | None, int | None, str | None], ...]

    @property
    def channel(self) -> str:
        """``email``, or ``xms`` for SMS and MMS (they share conversations and bodies)."""
        return "email" if self.provider_kind == "email" else "xms"

    @property
    def customer_endpoint(self) -> Address:
        """The customer's own address: the first ``to`` inbound, ``from`` outbound."""
        return self.recipients[0] if self.direction == "inbound" else self.sender

    @property
    def contacts(self) -> tuple[Address, ...]:
        """The other side's addresses, the first one threading the conversation."""
        if self.direction == "inbound":
            return (self.sender, *self.recipients[1:])
        return self.recipients


@dataclass(frozen=True)
class StatusReport:
    """A validated ``message.status`` payload: one provider report about one message.

    ``status`` is None for a report that changes nothing (a temporary
    failure, ``deferred``, an unknown word): it is only kept in the history.
    ``word`` is the provider's own word (``undelivered``, ``HardBounce``);
    ``event_id`` the provider's id of the report, when it has one.
    """

    customer_key: str
    customer_name: str
    provider_kind: str
    provider_name: str
    message_id: str
    status: str | None
    word: str
    at: dt.datetime
    detail: str | None
    event_id: str | None
    #: a record of an event the receiver refused: kept only when its message is stored
    refused: bool = False


def _get(obj: dict, field: str, path: str, *, required: bool = True):
    if field not in obj or obj[field] is None:
        if required:
            raise PayloadError(f"{path}: missing (required)")
        return None
    return obj[field]


def _object(value, path: str) -> dict:
    if not isinstance(value, dict):
        raise PayloadError(f"{path}: expected an object, got {type(value).__name__}")
    return value


def _text(value, path: str, *, max_len: int | None = MAX_KEY, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise PayloadError(f"{path}: expected a string, got {type(value).__name__}")
    if "\x00" in value:
        raise PayloadError(f"{path}: contains a NUL character")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise PayloadError(f"{path}: contains a lone surrogate") from None
    if not empty and not value.strip():
        raise PayloadError(f"{path}: must not be empty")
    if max_len is not None and len(value) > max_len:
        raise PayloadError(f"{path}: longer than {max_len} characters")
    return value


def _opt_text(obj: dict, field: str, path: str, **kwargs) -> str | None:
    value = _get(obj, field, path, required=False)
    return None if value is None else _text(value, path, **kwargs)


def _timestamp(value, path: str) -> dt.datetime:
    text = _text(value, path)
    try:
        parsed = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise PayloadError(
            f"{path}: not an ISO 8601 timestamp: {text!r} (e.g. 2025-11-05T10:00:00+02:00)"
        ) from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise PayloadError(f"{path}: no time zone in {text!r}; give an offset such as Z or +02:00")
    try:
        return parsed.astimezone(dt.UTC)
    except OverflowError:
        raise PayloadError(
            f"{path}: {text!r} is out of range once in UTC (years 1 to 9999)"
        ) from None


def _unprintable(text: str) -> str | None:
    """The first control character in ``text``, as ``U+XXXX``, if any."""
    found = _CONTROL.search(text)
    return None if found is None else f"U+{ord(found.group()):04X}"


def _email_problem(text: str) -> str | None:
    """Why ``text`` (trimmed) is not a well-formed email address, or None.

    One ``@`` between a local part and a domain; neither holds whitespace or
    an RFC 5322 special (so no quoted local parts, no domain literals); the
    domain is dot-separated labels of letters and marks (any script), digits,
    ``-`` and ``_``. Dots and ``+tags`` in the local part are kept as they are.
    """
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain:
        return "expected local-part@domain"
    bad = _LOCAL_PART_REFUSED.search(local)
    if bad is not None:
        return f"{bad.group()!r} in the local part"
    if _ASCII_DOMAIN.fullmatch(domain):
        return None
    for label in domain.split("."):
        if not label:
            return f"empty label in the domain {domain!r}"
        bad = next((ch for ch in label if not _domain_character(ch)), None)
        if bad is not None:
            return f"{bad!r} in the domain"
    return None


def _domain_character(ch: str) -> bool:
    return ch.isalnum() or ch in "-_" or unicodedata.category(ch).startswith("M")


def _phone_problem(text: str) -> str | None:
    """Why ``text`` cannot be a written phone number, or None (:data:`_PHONE_PUNCTUATION`)."""
    if _ASCII_PHONE.fullmatch(text):
        return None
    for ch in unicodedata.normalize("NFKC", text):
        allowed = ch.isdigit() or ch.isspace() or (ch.isascii() and ch.isalpha())
        if not allowed and ch not in _PHONE_PUNCTUATION:
            return f"{ch!r} is not part of a phone number"
    return None


def _address(value, path: str, kind: str) -> Address:
    obj = _object(value, path)
    where = f"{path}.address"
    raw = _text(_get(obj, "address", where), where, max_len=MAX_ADDRESS_BYTES)
    name = _opt_text(obj, "name", f"{path}.name", max_len=None, empty=True)
    control = _unprintable(raw)
    if control:
        raise PayloadError(f"{where}: contains a control character ({control})")
    text = raw.strip(dedup.WHITESPACE)
    if kind == "email":
        problem, what = _email_problem(text), "an email address"
    else:
        problem, what = _phone_problem(text), "a phone number"
    if problem:
        raise PayloadError(f"{where}: not {what}: {problem}")
    try:
        normalized = dedup.normalize_email(raw) if kind == "email" else dedup.normalize_phone(raw)
    except ValueError as exc:
        raise PayloadError(f"{where}: {exc}") from None
    size = len(normalized) if normalized.isascii() else len(normalized.encode("utf-8"))
    if size > MAX_ADDRESS_BYTES:
        raise PayloadError(f"{where}: longer than {MAX_ADDRESS_BYTES} bytes once normalized")
    return Address(raw=raw, normalized=normalized, name=name or None)


def _attachment_url(value, path: str) -> str:
    """An ``http(s)`` URL with a host, or the attachment store's own
    (:data:`convdb.attachments.URL_SCHEMES`); kept as given."""
    url = _text(value, path, max_len=MAX_URL)
    control = _unprintable(url)
    if control:
        raise PayloadError(f"{path}: contains a control character ({control})")
    text = url.strip(dedup.WHITESPACE)
    if _WHITESPACE.search(text):
        raise PayloadError(f"{path}: contains whitespace (percent-encode it)")
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 -- raises ValueError for a port out of range
    except ValueError as exc:
        raise PayloadError(f"{path}: not a URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in store.URL_SCHEMES:
        shown = f"{parts.scheme}:" if parts.scheme else "none"
        allowed = ", ".join(store.URL_SCHEMES)
        raise PayloadError(f"{path}: scheme {shown} refused; allowed: {allowed}")
    if scheme == store.STORE_SCHEME:
        if store.digest_of(text) is None:
            raise PayloadError(f"{path}: not a stored attachment ({store.URL_PREFIX}<sha256 hex>)")
    elif not parts.hostname:
        raise PayloadError(f"{path}: no host in {text[:80]!r}")
    return url


def _size(obj: dict, path: str) -> int | None:
    """An attachment's optional byte size: a non-negative integer."""
    value = obj.get("size")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
        raise PayloadError(f"{path}: expected a non-negative integer (bytes)")
    return value


def _filename(obj: dict, path: str) -> str | None:
    """An attachment's optional file name, for people to read: at most
    :data:`MAX_FILENAME` characters (longer ones are cut), blank is none."""
    value = _opt_text(obj, "filename", path, max_len=None, empty=True)
    if value is None or not value.strip():
        return None
    return value.strip()[:MAX_FILENAME]


def _customer_and_provider(obj: dict) -> tuple[str, str, str, str]:
    customer = _object(_get(obj, "customer", "customer"), "customer")
    customer_key = _text(_get(customer, "key", "customer.key"), "customer.key")
    customer_name = _opt_text(customer, "name", "customer.name", max_len=None) or customer_key
    provider = _object(_get(obj, "provider", "provider"), "provider")
    kind = _text(_get(provider, "kind", "provider.kind"), "provider.kind")
    if kind not in MESSAGE_KINDS:
        raise PayloadError(f"provider.kind: {kind!r} is not one of {', '.join(MESSAGE_KINDS)}")
    provider_name = _text(_get(provider, "name", "provider.name"), "provider.name")
    return customer_key, customer_name, kind, provider_name


def _message_id(obj: dict) -> str:
    message_id = _get(obj, "message_id", "message_id")
    if isinstance(message_id, int) and not isinstance(message_id, bool):
        message_id = str(message_id)  # some providers use numeric ids
    return _text(message_id, "message_id")


def parse_status(payload) -> StatusReport:
    """Validate a ``message.status`` payload; :class:`PayloadError` names the first bad field.

    ``status`` is one of :data:`STATUSES`, or null for a report that changes
    nothing (then ``word`` says what the provider said). ``at`` is an ISO 8601
    time with an offset; ``detail`` (the provider's word or error code),
    ``word`` (default: ``detail``, else ``status``) and ``event_id`` (the
    provider's id of this report) are optional. ``refused: true`` marks the
    record of an event the receiver refused (its reason in ``detail``): kept in
    the history only when its message is stored.
    """
    obj = _object(payload, "payload")
    customer_key, customer_name, kind, provider_name = _customer_and_provider(obj)
    message_id = _message_id(obj)
    if "status" not in obj:
        raise PayloadError("status: missing (required; null for a report that changes nothing)")
    status = obj["status"]
    if status is not None and status not in STATUSES:
        shown = repr(status)[:80]
        raise PayloadError(f"status: {shown} is not one of {', '.join(STATUSES)} (or null)")
    detail = _opt_text(obj, "detail", "detail", max_len=MAX_DETAIL)
    word = _opt_text(obj, "word", "word", max_len=MAX_DETAIL) or detail or status
    if word is None:
        raise PayloadError("word: missing (required when status is null and there is no detail)")
    event_id = _get(obj, "event_id", "event_id", required=False)
    refused = obj.get("refused", False)
    if not isinstance(refused, bool):
        raise PayloadError("refused: expected true or false")
    if refused and status is not None:
        raise PayloadError("status: must be null in the record of a refused event")
    return StatusReport(
        customer_key=customer_key,
        customer_name=customer_name,
        provider_kind=kind,
        provider_name=provider_name,
        message_id=message_id,
        status=status,
        word=word,
        at=_timestamp(_get(obj, "at", "at"), "at"),
        detail=detail,
        event_id=None if event_id is None else _text(event_id, "event_id"),
        refused=refused,
    )


def parse_event(event_type: str, payload) -> CanonicalMessage | StatusReport:
    """The canonical validation of one event of the core's types (:data:`EVENT_TYPES`).

    Every door asks this function: what it refuses, the worker would refuse
    for good. :class:`PayloadError` for a bad payload or another event type.
    """
    if event_type == "message.status":
        return parse_status(payload)
    if event_type in ("message.received", "message.sent"):
        return parse_message(payload, event_type)
    known = ", ".join(EVENT_TYPES)
    raise PayloadError(f"event type {str(event_type)[:100]!r} is not one of {known}")


def parse_message(payload, event_type: str | None = None) -> CanonicalMessage:
    """Validate a canonical payload; :class:`PayloadError` names the first bad field.

    ``direction`` may be left out when ``event_type`` is given: it is then
    ``inbound`` for ``message.received`` and ``outbound`` for ``message.sent``.
    Unknown fields are ignored.
    """
    obj = _object(payload, "payload")
    customer_key, customer_name, kind, provider_name = _customer_and_provider(obj)
    default_direction = {"message.received": "inbound", "message.sent": "outbound"}
    direction = _get(obj, "direction", "direction", required=event_type not in default_direction)
    direction = default_direction[event_type] if direction is None else direction
    if direction not in ("inbound", "outbound"):
        raise PayloadError(f"direction: {direction!r} is not 'inbound' or 'outbound'")
    message_id = _message_id(obj)
    sender = _address(_get(obj, "from", "from"), "from", kind)
    to = _get(obj, "to", "to")
    if not isinstance(to, list) or not to:
        raise PayloadError("to: expected a non-empty list of addresses")
    recipients = tuple(_address(item, f"to[{i}]", kind) for i, item in enumerate(to))
    body = _text(_get(obj, "body", "body"), "body", max_len=None, empty=True)
    attachments = _get(obj, "attachments", "attachments", required=False) or []
    if not isinstance(attachments, list):
        raise PayloadError("attachments: expected a list")
    files: dict[str, tuple[str | None, int | None, str | None]] = {}
    for i, item in enumerate(attachments):
        item = _object(item, f"attachments[{i}]")
        where = f"attachments[{i}].url"
        url = _attachment_url(_get(item, "url", where), where)
        content_type = _opt_text(item, "content_type", f"attachments[{i}].content_type")
        files.setdefault(
            url,
            (
                content_type,
                _size(item, f"attachments[{i}].size"),
                _filename(item, f"attachments[{i}].filename"),
            ),
        )
    received = _get(obj, "received_at", "received_at", required=False)
    return CanonicalMessage(
        customer_key=customer_key,
        customer_name=customer_name,
        provider_kind=kind,
        provider_name=provider_name,
        direction=direction,
        message_id=message_id,
        sender=sender,
        recipients=recipients,
        subject=_opt_text(obj, "subject", "subject", max_len=None, empty=True) or None,
        body=body,
        sent_at=_timestamp(_get(obj, "sent_at", "sent_at"), "sent_at"),
        received_at=None if received is None else _timestamp(received, "received_at"),
        conversation_key=_opt_text(obj, "conversation_key", "conversation_key"),
        attachments=tuple((url, *info) for url, info in files.items()),
    )


def validate_received(payload) -> None:
    """The validator of ``message.received`` (``Plugin.validators``): what its handler
    checks, run by every door before it accepts the event."""
    parse_message(payload, "message.received")


def validate_sent(payload) -> None:
    """The validator of ``message.sent``; see :func:`validate_received`."""
    parse_message(payload, "message.sent")


def validate_status(payload) -> None:
    """The validator of ``message.status``; see :func:`validate_received`."""
    parse_status(payload)
