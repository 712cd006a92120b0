"""Operating the queue from the command line or Python: each function opens the
database at ``url`` (default: DATABASE_URL, .env, or the embedded server),
does one job and closes it.

``convdb enqueue`` -> :func:`enqueue_file`; ``convdb queue stats`` ->
:func:`stats`; ``convdb queue retry-dead`` ->
:func:`retry_dead`; ``convdb queue purge`` -> :func:`purge`. The operator console
also calls :func:`retry_dead`, :func:`purge_dead` and :func:`dead_summary`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Sequence
from typing import IO

from ..db import closing, connect, connect_read
from ..exceptions import ConfigError
from . import overview
from .acceptance import installed
from .enqueue import delay_seconds, read_events
from .limits import Limits
from .manager import QueueManager, QueueStats

# convdb enqueue: lines stored per statement.
SLICE_ROWS = 1000
SLICE_BYTES = 1024 * 1024

_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """``'7d'``, ``'12h'``, ``'30m'``, ``'45s'``, ``'2w'`` (or a sum: ``'1d12h'``) in seconds."""
    position, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()]
        position = match.end()
    if position != len(text) or not text.strip():
        raise ConfigError(
            f"not a duration: {text!r}",
            hint="Use a number and a unit: 45s, 30m, 12h, 7d, 2w (or a sum such as 1d12h).",
        )
    return total


def enqueue_file(
    event_type: str,
    stream: IO[bytes] | IO[str],
    *,
    name: str = "<stdin>",
    key_field: str | None = None,
    delay: float = 0.0,
    url: str | None = None,
    limits: Limits | None = None,
    validate: bool = True,
) -> tuple[int, int]:
    """Enqueue one payload per line of ``stream``; ``(stored, skipped as duplicates)``.

    All in one transaction, read and stored in slices (memory stays flat
    whatever the file): a bad line raises an error naming it
    (:func:`~convdb.queue.enqueue.read_events`), the transaction is rolled
    back and nothing from the file is stored. ``key_field`` (a dotted path
    such as ``message_id``) gives each event an idempotency key from its
    payload, namespaced by event type, customer and provider
    (:func:`~convdb.queue.enqueue.key_of`). Each payload is accepted as
    :func:`~convdb.queue.enqueue.enqueue` accepts it; ``validate=False`` holds
    it to the limits only.
    """
    acceptance = installed()
    if limits is not None:
        acceptance = dataclasses.replace(acceptance, limits=limits)
    acceptance.envelope(event_type, None)
    if validate and event_type not in acceptance.handled:
        raise acceptance.unknown(event_type)
    delay = delay_seconds(delay)
    lines = read_events(
        stream,
        name,
        event_type,
        key_field=key_field,
        limits=acceptance.limits,
        acceptance=acceptance if validate else None,
    )
    stored = total = 0
    with closing(connect(url, bind=False)) as db, db.atomic():
        manager = QueueManager(db)
        for part in _slices(lines):
            stored += len(manager.insert([(event_type, text, key, delay) for text, key in part]))
            total += len(part)
    return stored, total - stored


def _slices(lines: Iterator[tuple[str, str | None]]) -> Iterator[list[tuple[str, str | None]]]:
    """Up to :data:`SLICE_ROWS` lines or about :data:`SLICE_BYTES` of payloads at a time."""
    part, size = [], 0
    for text, key in lines:
        part.append((text, key))
        size += len(text)
        if len(part) >= SLICE_ROWS or size >= SLICE_BYTES:
            yield part
            part, size = [], 0
    if part:
        yield part


def stats(url: str | None = None) -> QueueStats:
    """The queue's statistics, read from ``url``, else ``CONVDB_READ_URL`` (a replica),
    else ``DATABASE_URL``: they decide no write, and may lag by the replica's lag."""
    with closing(connect_read(url)) as db:
        return QueueManager(db).stats()


def retry_dead(
    *, event_type: str | None = None, ids: Sequence[int] = (), url: str | None = None
) -> int:
    """Put dead events (all, of one type, or the given ids) back to pending; how many."""
    with closing(connect(url, bind=False)) as db:
        return QueueManager(db).retry_dead(event_type, list(ids) or None)


def purge_dead(
    *, event_type: str | None = None, ids: Sequence[int] = (), url: str | None = None
) -> int:
    """Delete dead events (all, of one type, or the given ids); how many."""
    with closing(connect(url, bind=False)) as db:
        return QueueManager(db).purge_dead(event_type, list(ids) or None)


def dead_summary(
    *, event_type: str | None = None, max_id: int | None = None, url: str | None = None
) -> tuple[int, int | None]:
    """How many dead events (of one type, up to ``max_id``) there are, and the newest id."""
    with closing(connect(url, bind=False)) as db:
        return overview.dead_summary(db.connection(), event_type=event_type, max_id=max_id)


def purge(older_than: str | float, url: str | None = None) -> int:
    """Delete done events processed more than ``older_than`` ago; how many. Erased
    events' keys past their replay window go too (``docs/privacy.md``)."""
    seconds = parse_duration(older_than) if isinstance(older_than, str) else float(older_than)
    with closing(connect(url, bind=False)) as db:
        purged = QueueManager(db).purge_done(seconds)
        with db.atomic():
            db.execute_sql("DELETE FROM erased_event_keys WHERE expires_at <= now()")
        return purged
