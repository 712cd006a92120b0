"""Putting events on the queue: the API a webhook receiver calls.

::

    import convdb
    from convdb.queue import enqueue, enqueue_many, namespaced_key

    convdb.connect()                                   # binds convdb.database
    key = namespaced_key("endpoint", endpoint_id, delivery_id)
    event_id = enqueue("message.received", payload, idempotency_key=key)
    ids = enqueue_many("message.received", payloads, delay=30)

Each call is one transaction (a single statement, one round trip, for up to
10,000 events; or it joins the caller's, as a savepoint, when one is open on
the database), and ``NOTIFY`` wakes idle workers when it commits.
An event whose ``idempotency_key`` is already stored is skipped: a webhook
delivered twice is stored once. ``delay`` (seconds or a ``timedelta``) makes
the event due later. Every event is accepted first, as the receiver accepts
it (:mod:`convdb.queue.acceptance`): held to the limits of
:mod:`convdb.queue.limits`, its type handled by an installed plugin, its
payload passed by that type's validator (the core's: the canonical message
checks). One that is refused raises :class:`~convdb.exceptions.PayloadError`
(the payload, naming the field; :class:`~convdb.queue.acceptance.Refused`
for an unknown type or a validator's refusal) or
:class:`~convdb.exceptions.QueueError` (event type, key) and nothing of the
call is stored. ``validate=False`` skips the handler and validator checks
(the limits still hold): for tools that replay or import events as they
were, leaving the verdict to the worker.

Idempotency keys are global to the table: a key derived from a payload must
say whose it is. :func:`namespaced_key` builds such keys; ``convdb enqueue
--key-field`` uses :func:`key_of` (event type, customer, provider, value).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterable, Iterator, Sequence
from typing import IO

import peewee

from ..exceptions import ConvdbError, PayloadError, QueueError
from . import acceptance as acceptance_mod
from . import limits as limits_mod
from .acceptance import Acceptance
from .limits import Limits, check_key
from .manager import QueueManager

__all__ = ["enqueue", "enqueue_many", "key_of", "namespaced_key", "read_events"]

Delay = float | int | dt.timedelta | None


def _database(db: peewee.Database | None) -> peewee.Database:
    if db is not None:
        return db
    from ..db import database

    if database.obj is None:
        raise QueueError(
            "no database to enqueue into",
            hint="Call convdb.connect() first, or pass db=.",
        )
    return database


def delay_seconds(delay: Delay) -> float:
    """``delay`` in seconds, or :class:`QueueError` outside 0 to ten years."""
    if delay is None:
        return 0.0
    seconds = delay.total_seconds() if isinstance(delay, dt.timedelta) else float(delay)
    if not 0 <= seconds < 10 * 365 * 86400:
        raise QueueError(f"delay must be from 0 to ten years, got {delay!r}")
    return seconds


def _located(exc: ConvdbError, where: str, suffix: str = "") -> ConvdbError:
    """``exc`` again with ``where`` in front of its message."""
    located = type(exc)(f"{where}: {exc.message}{suffix}", hint=exc.hint)
    if hasattr(exc, "reason"):
        located.reason = exc.reason
    return located


def _acceptance(acceptance: Acceptance | None, limits: Limits | None) -> Acceptance:
    found = acceptance or acceptance_mod.installed()
    if limits is not None and limits != found.limits:
        found = dataclasses.replace(found, limits=limits)
    return found


def _door(acceptance: Acceptance | None, limits: Limits | None, event_type, validate: bool):
    """The acceptance to use, once the event type is known to fit the limits."""
    found = _acceptance(acceptance, limits)
    found.envelope(event_type, None)
    return found


def _row(
    acceptance: Acceptance, event_type: str, payload, key, validate: bool, where: str
) -> tuple[str, str | None]:
    try:
        accepted = acceptance.accept(event_type, payload, key, validate=validate)
    except (PayloadError, QueueError) as exc:
        if getattr(exc, "reason", None) == "unknown_event_type":
            raise  # the call's, not one payload's
        raise _located(exc, where) from None
    return accepted.text, accepted.idempotency_key


def enqueue(
    event_type: str,
    payload: dict,
    *,
    idempotency_key: str | None = None,
    delay: Delay = None,
    db: peewee.Database | None = None,
    limits: Limits | None = None,
    validate: bool = True,
    acceptance: Acceptance | None = None,
) -> int | None:
    """Store one event; its id, or None when ``idempotency_key`` is already stored.

    ``limits`` default to the settings' (:func:`convdb.queue.limits.configured`),
    ``acceptance`` to the installed plugins' (:func:`convdb.queue.acceptance.installed`).
    """
    found = _door(acceptance, limits, event_type, validate)
    text, key = _row(found, event_type, payload, idempotency_key, validate, "payload")
    ids = QueueManager(_database(db)).insert([(event_type, text, key, delay_seconds(delay))])
    return ids[0] if ids else None


def enqueue_many(
    event_type: str,
    payloads: Iterable[dict],
    *,
    idempotency_keys: Sequence[str | None] | None = None,
    delay: Delay = None,
    db: peewee.Database | None = None,
    limits: Limits | None = None,
    validate: bool = True,
    acceptance: Acceptance | None = None,
) -> list[int]:
    """Store many events of one type in one transaction; the ids of those stored.

    ``idempotency_keys``, when given, has one key (or None) per payload. Events
    whose key is already stored (or repeated earlier in the batch) are skipped.
    """
    found = _door(acceptance, limits, event_type, validate)
    payloads = list(payloads)
    keys = list(idempotency_keys) if idempotency_keys is not None else [None] * len(payloads)
    if len(keys) != len(payloads):
        raise QueueError(f"{len(payloads)} payloads but {len(keys)} idempotency keys")
    seconds = delay_seconds(delay)
    rows = []
    for i, (payload, key) in enumerate(zip(payloads, keys, strict=True)):
        text, key = _row(found, event_type, payload, key, validate, f"payload {i}")
        rows.append((event_type, text, key, seconds))
    return QueueManager(_database(db)).insert(rows)


def namespaced_key(*parts: object) -> str:
    """An idempotency key that says whose it is: ``parts`` as a compact JSON array.

    ``namespaced_key("message.received", "acme", "sms", "twilio", "SM123")``
    is ``["message.received","acme","sms","twilio","SM123"]``: unambiguous
    whatever the parts hold, and readable in ``inbound_events``. Parts are
    strings (numbers are written as text) or None.
    """
    texts = [None if p is None else p if isinstance(p, str) else str(p) for p in parts]
    return json.dumps(texts, ensure_ascii=False, separators=(",", ":"))


def _scalar(value) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    return value if isinstance(value, str) else json.dumps(value)


def _field(payload, path: str):
    value = payload
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def key_of(event_type: str, payload: dict, path: str) -> str | None:
    """The idempotency key of ``payload`` from its field at the dotted ``path`` (or None).

    Namespaced by event type, customer (``customer.key``) and provider
    (``provider.kind``, ``provider.name``), so two customers or two providers
    that use the same message id never share a key. Parts a payload lacks
    are null.
    """
    value = _scalar(_field(payload, path))
    if value is None:
        return None
    owners = ("customer.key", "provider.kind", "provider.name")
    return namespaced_key(event_type, *(_scalar(_field(payload, p)) for p in owners), value)


def read_events(
    stream: IO[bytes] | IO[str],
    name: str,
    event_type: str,
    *,
    key_field: str | None = None,
    limits: Limits,
    acceptance: Acceptance | None = None,
) -> Iterator[tuple[str, str | None]]:
    """``(payload JSON text, idempotency key)`` for each line of ``stream``; blank lines skipped.

    A bad line (not UTF-8, not a JSON object, over a limit, something
    PostgreSQL cannot store, a key too long) raises
    :class:`~convdb.exceptions.PayloadError` or
    :class:`~convdb.exceptions.QueueError` naming ``name`` and the line,
    before anything after it is read. A line may be at most six times the
    payload limit long (the longest JSON escape of one stored byte). With
    ``acceptance``, each payload must pass its validator too
    (:meth:`~convdb.queue.acceptance.Acceptance.validate`).
    """
    longest = 6 * limits.payload_bytes + 2
    number = 0
    while raw := stream.readline(longest):
        number += 1
        where = f"{name}, line {number}"
        end = b"\n" if isinstance(raw, bytes) else "\n"
        if len(raw) >= longest and not raw.endswith(end):
            raise PayloadError(
                f"{where}: longer than {longest - 2:,} characters, six times the payload limit "
                "(CONVDB_MAX_PAYLOAD_BYTES); nothing was stored"
            )
        try:
            text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        except UnicodeDecodeError as exc:
            raise PayloadError(
                f"{where}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at byte "
                f"{exc.start + 1}); nothing was stored"
            ) from None
        if not text.strip():
            continue
        try:
            payload = limits_mod.decode(text, limits)
            stored = limits_mod.encode(payload, limits)
            if acceptance is not None:
                repaired = acceptance.validate(event_type, payload)
                if repaired is not payload:
                    payload, stored = repaired, limits_mod.encode(repaired, limits)
        except PayloadError as exc:
            raise _located(exc, where, "; nothing was stored") from None
        key = None
        if key_field:
            try:
                key = check_key(key_of(event_type, payload, key_field), limits)
            except QueueError as exc:
                raise _located(exc, f"{where}: {key_field}", "; nothing was stored") from None
        yield stored, key
