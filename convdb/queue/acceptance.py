"""The one home of event acceptance: may this event enter the queue?

Every door asks the same question before it stores an event: ``enqueue``
(:func:`convdb.queue.enqueue`, ``convdb enqueue``) and the receiver
(``convdb serve``, before it answers 2xx) call :meth:`Acceptance.accept`;
the worker holds every claimed event to the same envelope
(:meth:`Acceptance.envelope`) and refuses a type nobody handles with the same
words (:meth:`Acceptance.unknown`). Each decides from the installed plugin
set (:meth:`Acceptance.installed`). An event is accepted when

1. its event type, idempotency key and payload fit the queue's limits
   (:mod:`convdb.queue.limits`: lengths, size, depth, what ``jsonb`` cannot
   hold);
2. an installed plugin has a handler for its type (the core handles
   ``message.received`` and ``message.sent``); and
3. the validator that plugin declares for the type (``Plugin.validators``)
   passes it. The core's ``message.*`` types are checked by
   :func:`convdb.ingest.parse_message`, the very function their handlers
   run; a new core type adds its validator in :mod:`convdb.core`. A
   validator may return a repaired payload, which is what is stored.

An event type with a handler but no validator (a plugin written before
validators existed) is accepted on 1 and 2 alone: its plugin answers for its
payloads. So, with the core's types, nothing a door accepts is refused for
good by the worker; only what depends on the database at that moment (a
lost connection, a row another event has not created yet) may still fail
there.

A refusal raises :class:`Refused` (a :class:`~convdb.exceptions.PayloadError`)
whose message starts with the field it names (``sent_at: no time zone ...``,
``event type 'tag.added': ...``), with a short ``reason`` label for the
receiver's answer; a limit of 1 raises the limit's own error
(:class:`~convdb.exceptions.QueueError` for the type and key,
:class:`~convdb.exceptions.PayloadError` for the payload,
:class:`~convdb.exceptions.PayloadTooLargeError` over the size).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from ..exceptions import PayloadError
from ..plugins import Found, Validator, load_handlers, load_validators
from . import limits as limits_mod
from .limits import Limits

__all__ = ["Acceptance", "Accepted", "Refused", "installed"]


class Refused(PayloadError):
    """An event no door may accept: an unknown type (``reason`` ``unknown_event_type``)
    or a payload its validator refused (``invalid_event``); the message names the field."""

    def __init__(
        self, message: str, *, reason: str = "invalid_event", hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.reason = reason


@dataclass(frozen=True)
class Accepted:
    """An accepted event: the payload to store (repaired, maybe) and its JSON text."""

    event_type: str
    payload: dict
    text: str
    idempotency_key: str | None


@dataclass(frozen=True)
class Acceptance:
    """Which events may enter the queue: the handled types, their validators, the limits."""

    handled: frozenset[str]
    validators: Mapping[str, Validator]
    limits: Limits = dataclasses.field(default_factory=limits_mod.configured)

    @classmethod
    def installed(
        cls, plugins: Sequence[Found] | None = None, *, limits: Limits | None = None
    ) -> Acceptance:
        """The acceptance of ``plugins`` (default: every installed plugin, ``core`` too)."""
        return cls(
            frozenset(load_handlers(plugins)),
            load_validators(plugins),
            limits or limits_mod.configured(),
        )

    @classmethod
    def of_handlers(cls, handlers: Collection[str], *, limits: Limits) -> Acceptance:
        """The acceptance of a worker given its handlers (no validators: its handlers check)."""
        return cls(frozenset(handlers), {}, limits)

    def envelope(self, event_type, idempotency_key) -> None:
        """Hold the type and the key to the limits (QueueError), whatever the payload."""
        limits_mod.check_event_type(event_type, self.limits)
        limits_mod.check_key(idempotency_key, self.limits)

    def unknown(self, event_type: str) -> Refused:
        """The refusal of an event type no installed plugin handles."""
        known = ", ".join(sorted(self.handled)) or "none"
        return Refused(
            f"unknown event type {event_type!r}: no handler (known: {known})",
            reason="unknown_event_type",
            hint="Install the plugin that handles it, or fix the event type.",
        )

    def accept(self, event_type, payload, idempotency_key=None, *, validate: bool = True):
        """The :class:`Accepted` event, or the refusal (see the module docstring).

        ``validate=False`` holds the event to the limits only (1): for tools
        that replay or import events as they were, the worker then decides.
        """
        self.envelope(event_type, idempotency_key)
        # The limits first: a validator never sees a payload too large or too deep.
        text = limits_mod.encode(payload, self.limits)
        if validate:
            repaired = self.validate(event_type, payload)
            if repaired is not payload:
                payload, text = repaired, limits_mod.encode(repaired, self.limits)
        return Accepted(event_type, payload, text, idempotency_key)

    def validate(self, event_type: str, payload: dict) -> dict:
        """``payload`` (or its repaired copy) if its type is handled and its validator passes it."""
        if event_type not in self.handled:
            raise self.unknown(event_type)
        validator = self.validators.get(event_type)
        if validator is None:
            return payload
        try:
            repaired = validator(payload)
        except (PayloadError, ValueError, TypeError) as exc:
            message = exc.message if isinstance(exc, PayloadError) else str(exc)
            raise Refused(message, reason="invalid_event") from None
        if repaired is None:
            return payload
        if not isinstance(repaired, dict):
            raise TypeError(
                f"the validator of {event_type!r} returned a {type(repaired).__name__}, "
                "not a dict or None"
            )
        return repaired


@functools.cache
def installed() -> Acceptance:
    """This process's acceptance: every installed plugin, the settings' limits (read once)."""
    return Acceptance.installed()
