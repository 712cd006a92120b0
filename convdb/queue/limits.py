"""What may enter the queue: limits, checked at enqueue and again by the worker.

Every event is held to four limits (settings in :mod:`convdb.config`):

======================  ================================  =========
limit                   setting                           default
======================  ================================  =========
payload size            ``CONVDB_MAX_PAYLOAD_BYTES``      1 MiB of UTF-8 JSON
payload nesting depth   ``CONVDB_MAX_PAYLOAD_DEPTH``      64 levels
idempotency key         ``CONVDB_MAX_KEY_LENGTH``         512 characters
event type              ``CONVDB_MAX_EVENT_TYPE_LENGTH``  128 characters
======================  ================================  =========

:func:`encode` turns a payload into the JSON text that is stored (or raises
:class:`~convdb.exceptions.PayloadError`); :func:`decode` reads one back (a
line of ``convdb enqueue``, a payload the worker claimed). Both refuse what
PostgreSQL's ``jsonb`` cannot hold (NaN, Infinity, ``\\u0000``, lone
surrogates) and what would exhaust the worker (depth is checked on the text
before the parser recurses). The messages name no location: callers prefix
``FILE, line N:``, ``payload N:`` or ``payload:``.

A sender's own id of a delivery (Standard Webhooks' ``webhook-id``, Twilio's
``MessageSid``, an email's ``Message-ID``), before the receiver namespaces it
into an idempotency key, is held to :func:`delivery_id_problem`: 1 to
:data:`DELIVERY_ID_LENGTH` printable ASCII characters without spaces, so the
namespaced key stays within ``CONVDB_MAX_KEY_LENGTH`` (checked again whole).
The receiver, ``enqueue`` and the worker hold events to these functions and
no other copy of them (:mod:`convdb.queue.acceptance`).
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass

from ..config import (
    DEFAULT_MAX_EVENT_TYPE_LENGTH,
    DEFAULT_MAX_KEY_LENGTH,
    DEFAULT_MAX_PAYLOAD_BYTES,
    DEFAULT_MAX_PAYLOAD_DEPTH,
    load_settings,
)
from ..exceptions import PayloadError, PayloadTooLargeError, QueueError
from ..plugins import EVENT_TYPE_RE

__all__ = [
    "BATCH_BYTES",
    "DELIVERY_ID_LENGTH",
    "Limits",
    "check_event_type",
    "check_key",
    "configured",
    "decode",
    "delivery_id_problem",
    "encode",
    "size_error",
]

#: Payload bytes a worker claims at once by default (``--batch-bytes``).
BATCH_BYTES = 4 * 1024 * 1024
#: Longest sender's id of a delivery (half the default key limit: its namespace fits).
DELIVERY_ID_LENGTH = 256
_DELIVERY_ID = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no spaces


def delivery_id_problem(value: object, limit: int = DELIVERY_ID_LENGTH) -> str | None:
    """Why ``value`` cannot be a sender's id of a delivery, or None (see the docstring)."""
    if not isinstance(value, str) or not value:
        return "is missing"
    if len(value) > limit:
        return f"is longer than {limit} characters"
    if not _DELIVERY_ID.fullmatch(value):
        return "must be printable ASCII without spaces"
    return None


@dataclass(frozen=True)
class Limits:
    payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    depth: int = DEFAULT_MAX_PAYLOAD_DEPTH
    key_length: int = DEFAULT_MAX_KEY_LENGTH
    event_type_length: int = DEFAULT_MAX_EVENT_TYPE_LENGTH

    @classmethod
    def from_settings(cls, settings) -> Limits:
        return cls(
            payload_bytes=settings.max_payload_bytes,
            depth=settings.max_payload_depth,
            key_length=settings.max_key_length,
            event_type_length=settings.max_event_type_length,
        )


@functools.cache
def configured() -> Limits:
    """The limits of this process's settings (read once: enqueue is a hot path)."""
    return Limits.from_settings(load_settings())


def _shown(value: str, width: int = 40) -> str:
    return repr(value if len(value) <= width else value[:width] + "...")


def check_event_type(event_type, limits: Limits) -> str:
    if not isinstance(event_type, str) or not event_type:
        raise QueueError(f"event type must be a non-empty string, got {event_type!r}")
    if len(event_type) > limits.event_type_length:
        raise QueueError(
            f"event type is {len(event_type):,} characters long, over the limit of "
            f"{limits.event_type_length} (CONVDB_MAX_EVENT_TYPE_LENGTH)"
        )
    if not EVENT_TYPE_RE.match(event_type):
        raise QueueError(
            f"event type {_shown(event_type)} may only hold letters, digits and _ . : -"
        )
    return event_type


def check_key(key, limits: Limits) -> str | None:
    """``key`` if it can be stored as an idempotency key (None: no key)."""
    if key is None:
        return None
    if not isinstance(key, str) or not key:
        raise QueueError(f"idempotency key must be a non-empty string, got {key!r}")
    if len(key) > limits.key_length:
        raise QueueError(
            f"idempotency key is {len(key):,} characters long, over the limit of "
            f"{limits.key_length} (CONVDB_MAX_KEY_LENGTH)"
        )
    if "\x00" in key:
        raise QueueError("idempotency key contains a NUL character")
    _utf8(key, "idempotency key ", QueueError)
    return key


def _utf8(text: str, subject: str, error: type[Exception]) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = text[exc.start]
        raise error(
            f"{subject}contains a lone surrogate (\\u{ord(bad):04x}), which is not valid Unicode"
        ) from None


# A JSON string or one bracket: what the depth scan looks at. Strings are
# matched whole (an unrolled loop, no backtracking) so brackets inside them
# do not count.
_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)
# \u0000 in JSON text: an odd number of backslashes before u0000.
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def too_deep(text: str, limit: int) -> bool:
    """Does the JSON ``text`` nest arrays and objects deeper than ``limit``?

    Counted on the text, so a document nested 100,000 deep costs one scan,
    never a recursion.
    """
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    for token in _TOKENS.finditer(text):
        char = token.group()
        if char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False


def _deep_error(limits: Limits) -> PayloadError:
    return PayloadError(f"nested deeper than {limits.depth} levels (CONVDB_MAX_PAYLOAD_DEPTH)")


def size_error(size: int, limits: Limits) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"{size:,} bytes of JSON, over the limit of {limits.payload_bytes:,} "
        "(CONVDB_MAX_PAYLOAD_BYTES)"
    )


def _check_text(text: str, limits: Limits) -> None:
    # ASCII text is its own UTF-8: no copy to count its bytes.
    size = len(text) if text.isascii() else len(_utf8(text, "", PayloadError))
    if size > limits.payload_bytes:
        raise size_error(size, limits)
    # The regular expression tries every position of the text (about 30 µs for
    # a 400-character payload); the substring test that must hold for it to
    # match is a fast scan.
    if "\\u0000" in text and _NUL_ESCAPE.search(text):
        raise PayloadError("contains \\u0000 (NUL), which PostgreSQL cannot store")
    if too_deep(text, limits.depth):
        raise _deep_error(limits)


def encode(payload, limits: Limits) -> str:
    """The JSON text stored for ``payload`` (a dict), or :class:`PayloadError`."""
    if not isinstance(payload, dict):
        raise PayloadError(f"expected a JSON object, got {type(payload).__name__}")
    try:
        text = json.dumps(payload, ensure_ascii=False, allow_nan=False)
    except RecursionError:
        raise _deep_error(limits) from None
    except (TypeError, ValueError) as exc:
        raise PayloadError(f"not JSON: {exc}") from None
    _check_text(text, limits)
    return text


def _no_constant(name: str):
    raise PayloadError(f"{name} is not valid JSON (JSON has no NaN or Infinity)")


# One decoder for every call: ``json.loads`` with an option builds a new one
# each time (about half of its cost on a 400-character payload). It holds no
# state between calls (the json module shares its own across threads too).
_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def decode(text: str, limits: Limits) -> dict:
    """The JSON object in ``text``, or :class:`PayloadError` (never another exception).

    Depth is checked before parsing. What PostgreSQL would refuse (NUL,
    surrogates) and the size are :func:`encode`'s business: text read back
    from ``jsonb`` has neither, and its size was checked in SQL.
    """
    if too_deep(text, limits.depth):
        raise _deep_error(limits)
    try:
        if isinstance(text, str) and not text.startswith("\ufeff"):
            payload = _DECODER.decode(text)
        else:  # bytes, or a byte-order mark: json.loads says what it says about them
            payload = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise PayloadError(f"not JSON ({exc.msg} at column {exc.colno})") from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise PayloadError(f"not JSON ({' '.join(str(exc).split())[:200]})") from None
    if not isinstance(payload, dict):
        raise PayloadError(f"expected a JSON object, got {type(payload).__name__}")
    return payload
