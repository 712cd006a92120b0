"""Putting events on the queue: the API a webhook receiver calls.

::

    import convdb
    from convdb.queue import enqueue, enqueue_many

    convdb.connect()                                   # binds convdb.database
    event_id = enqueue("message.received", payload, idempotency_key="sendgrid:abc123")
    ids = enqueue_many("message.received", payloads, delay=30)

Each call is one transaction (a single statement, one round trip, for up to
10,000 events; or it joins the caller's, as a savepoint, when one is open on
the database), and ``NOTIFY`` wakes idle workers when it commits.
An event whose ``idempotency_key`` is already stored is skipped: a webhook
delivered twice is stored once. ``delay`` (seconds or a ``timedelta``) makes
the event due later.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from typing import IO

import peewee

from ..exceptions import PayloadError, QueueError
from .manager import QueueManager

__all__ = ["enqueue", "enqueue_many", "read_payloads"]

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


def _seconds(delay: Delay) -> float:
    if delay is None:
        return 0.0
    seconds = delay.total_seconds() if isinstance(delay, dt.timedelta) else float(delay)
    if seconds < 0:
        raise QueueError(f"delay must not be negative, got {delay!r}")
    return seconds


def _check(event_type: str, payload, where: str = "payload") -> None:
    if not isinstance(event_type, str) or not event_type.strip():
        raise QueueError(f"event type must be a non-empty string, got {event_type!r}")
    if not isinstance(payload, dict):
        raise PayloadError(f"{where}: expected a JSON object, got {type(payload).__name__}")


def enqueue(
    event_type: str,
    payload: dict,
    *,
    idempotency_key: str | None = None,
    delay: Delay = None,
    db: peewee.Database | None = None,
) -> int | None:
    """Store one event; its id, or None when ``idempotency_key`` is already stored."""
    _check(event_type, payload)
    ids = QueueManager(_database(db)).insert(
        [(event_type, payload, idempotency_key, _seconds(delay))]
    )
    return ids[0] if ids else None


def enqueue_many(
    event_type: str,
    payloads: Iterable[dict],
    *,
    idempotency_keys: Sequence[str | None] | None = None,
    delay: Delay = None,
    db: peewee.Database | None = None,
) -> list[int]:
    """Store many events of one type in one transaction; the ids of those stored.

    ``idempotency_keys``, when given, has one key (or None) per payload. Events
    whose key is already stored (or repeated earlier in the batch) are skipped.
    """
    payloads = list(payloads)
    keys = list(idempotency_keys) if idempotency_keys is not None else [None] * len(payloads)
    if len(keys) != len(payloads):
        raise QueueError(f"{len(payloads)} payloads but {len(keys)} idempotency keys")
    for i, payload in enumerate(payloads):
        _check(event_type, payload, f"payload {i}")
    seconds = _seconds(delay)
    rows = [(event_type, p, k, seconds) for p, k in zip(payloads, keys, strict=True)]
    return QueueManager(_database(db)).insert(rows)


def read_payloads(stream: IO[str], name: str = "<stdin>") -> list[dict]:
    """One JSON object per line (blank lines skipped); all of them, or PayloadError.

    The error names the file and the first bad line, so nothing is stored
    from a file with a bad line.
    """
    payloads = []
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            payload = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PayloadError(
                f"{name}, line {number}: not JSON ({exc.msg} at column {exc.colno}); "
                "nothing was stored"
            ) from None
        if not isinstance(payload, dict):
            raise PayloadError(
                f"{name}, line {number}: expected a JSON object, got "
                f"{type(payload).__name__}; nothing was stored"
            )
        payloads.append(payload)
    return payloads


def key_of(payload: dict, path: str) -> str | None:
    """The value at the dotted ``path`` of ``payload`` as an idempotency key (or None)."""
    value = payload
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    if value is None or isinstance(value, dict | list):
        return None
    return str(value)
