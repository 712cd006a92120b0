"""How an adapter refuses a request: :class:`Rejection`, key validation, and the queue's limits."""

from __future__ import annotations

import re

from ..exceptions import PayloadError, PayloadTooLargeError, QueueError
from ..queue import limits as queue_limits

REASON_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_KEY_RE = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no spaces


class Rejection(Exception):
    """An adapter's refusal of a request; nothing is stored.

    ``kind`` is ``"unauthorized"`` (401 unless the adapter says otherwise),
    ``"malformed"`` (400, or :attr:`Adapter.malformed_status`) or
    ``"too_large"`` (413). ``reason`` is a short label (lowercase letters,
    digits, ``_``) used in the log line, the metrics and the answer;
    ``detail`` is a sentence for the sender and the log: never put a secret
    in either. ``status`` overrides the adapter's code for this one answer.
    """

    KINDS = ("unauthorized", "malformed", "too_large")

    def __init__(
        self, kind: str, reason: str, detail: str = "", *, status: int | None = None
    ) -> None:
        if kind not in self.KINDS:
            raise ValueError(f"Rejection kind must be one of {self.KINDS}, not {kind!r}")
        if not REASON_RE.match(reason):
            raise ValueError(f"Rejection reason must match {REASON_RE.pattern}, not {reason!r}")
        if status is not None and not 400 <= status <= 499:
            raise ValueError(f"Rejection status must be a 4xx code, not {status!r}")
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.kind = kind
        self.reason = reason
        self.detail = detail[:300]
        self.status = status

    @classmethod
    def unauthorized(cls, reason: str, detail: str = "", *, status: int | None = None):
        return cls("unauthorized", reason, detail, status=status)

    @classmethod
    def malformed(cls, reason: str, detail: str = "", *, status: int | None = None):
        return cls("malformed", reason, detail, status=status)

    @classmethod
    def too_large(cls, detail: str = "") -> Rejection:
        return cls("too_large", "too_large", detail)


def check_key(value: object, what: str, limit: int) -> str:
    """``value`` if it is 1-``limit`` printable ASCII characters without spaces.

    Otherwise a malformed :class:`Rejection` (reason ``bad_key``).
    """
    if not isinstance(value, str) or not value:
        raise Rejection.malformed("bad_key", f"the {what} is missing")
    if len(value) > limit:
        raise Rejection.malformed("bad_key", f"the {what} is longer than {limit} characters")
    if not _KEY_RE.match(value):
        raise Rejection.malformed("bad_key", f"the {what} must be printable ASCII without spaces")
    return value


__all__ = ["REASON_RE", "Rejection", "check_key"]


def queued_text(event_type: str, payload: dict, key: str) -> str:
    """The payload's stored text, held to the queue's limits (what the worker would
    refuse is never acknowledged): a 413 :class:`Rejection` over the size, else a
    400 (``bad_payload``) naming the limit."""
    limits = queue_limits.configured()
    try:
        queue_limits.check_key(key, limits)
        queue_limits.check_event_type(event_type, limits)
        return queue_limits.encode(payload, limits)
    except PayloadTooLargeError as exc:
        raise Rejection.too_large(f"the event is {exc}") from None
    except (PayloadError, QueueError) as exc:
        raise Rejection.malformed("bad_payload", f"the event cannot be queued: {exc}") from None
