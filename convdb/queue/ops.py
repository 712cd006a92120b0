"""Operating the queue from the command line or Python: each function opens the
database at ``url`` (default: DATABASE_URL, .env, or the embedded server),
does one job and closes it.

``convdb enqueue`` -> :func:`enqueue_file`; ``convdb queue stats`` ->
:func:`stats`; ``convdb queue retry-dead`` ->
:func:`retry_dead`; ``convdb queue purge`` -> :func:`purge`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import IO

from ..db import closing, connect
from ..exceptions import ConfigError
from .enqueue import enqueue_many, key_of, read_payloads
from .manager import QueueManager, QueueStats

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
    stream: IO[str],
    *,
    name: str = "<stdin>",
    key_field: str | None = None,
    delay: float = 0.0,
    url: str | None = None,
) -> tuple[int, int]:
    """Enqueue one payload per line of ``stream``; ``(stored, skipped as duplicates)``.

    Every line is parsed before anything is stored: a line that is not a JSON
    object raises :class:`~convdb.exceptions.PayloadError` naming it, and
    nothing from the file is stored. ``key_field`` (a dotted path such as
    ``message_id``) takes each event's idempotency key from its payload.
    """
    payloads = read_payloads(stream, name)
    keys = [key_of(p, key_field) for p in payloads] if key_field else None
    with closing(connect(url, bind=False)) as db:
        ids = enqueue_many(event_type, payloads, idempotency_keys=keys, delay=delay, db=db)
    return len(ids), len(payloads) - len(ids)


def stats(url: str | None = None) -> QueueStats:
    with closing(connect(url, bind=False)) as db:
        return QueueManager(db).stats()


def retry_dead(
    *, event_type: str | None = None, ids: Sequence[int] = (), url: str | None = None
) -> int:
    """Put dead events (all, of one type, or the given ids) back to pending; how many."""
    with closing(connect(url, bind=False)) as db:
        return QueueManager(db).retry_dead(event_type, list(ids) or None)


def purge(older_than: str | float, url: str | None = None) -> int:
    """Delete done events processed more than ``older_than`` ago; how many."""
    seconds = parse_duration(older_than) if isinstance(older_than, str) else float(older_than)
    with closing(connect(url, bind=False)) as db:
        return QueueManager(db).purge_done(seconds)
