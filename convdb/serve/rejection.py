"""How an adapter refuses a request: :class:`Rejection`, and the check of a sender's ids.

The receiver's acceptance of an event (the queue's limits, the handled
types, the validators) is the queue's: :mod:`convdb.queue.acceptance`, which
the receiver calls before it answers (:func:`convdb.serve.app.Receiver`).
"""

from __future__ import annotations

import re

from ..exceptions import ConvdbError, PayloadTooLargeError
from ..queue.limits import delivery_id_problem

REASON_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


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


def check_key(value: object, what: str, limit: int | None = None) -> str:
    """``value`` if it can be a sender's id of a delivery
    (:func:`convdb.queue.limits.delivery_id_problem`: 1 to ``limit``, default
    :data:`~convdb.queue.limits.DELIVERY_ID_LENGTH`, printable ASCII characters
    without spaces). Otherwise a malformed :class:`Rejection` (reason ``bad_key``).
    """
    problem = delivery_id_problem(value) if limit is None else delivery_id_problem(value, limit)
    if problem is not None:
        raise Rejection.malformed("bad_key", f"the {what} {problem}")
    return value


def refused(exc: ConvdbError) -> Rejection:
    """The answer to an event the queue's acceptance refused (:mod:`convdb.queue.acceptance`):
    413 over the size; else the adapter's "do not retry" code, with the refusal's reason
    (``unknown_event_type``, ``invalid_event``; ``bad_payload`` for a limit) and its
    message, which names the field."""
    if isinstance(exc, PayloadTooLargeError):
        return Rejection.too_large(f"the event is {exc.message}")
    reason = getattr(exc, "reason", "bad_payload")
    return Rejection.malformed(reason, exc.message)


__all__ = ["REASON_RE", "Rejection", "check_key", "refused"]
