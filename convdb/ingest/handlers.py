"""The queue handlers of ``message.received`` and ``message.sent`` (registered by
:mod:`convdb.core`).

They run inside the worker's transaction, on the database the models are
bound to (:data:`convdb.db.database`). One event is a batch of one: both
handlers call the same writer (:func:`convdb.ingest.writer.ingest_messages`).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..db import database
from ..exceptions import PayloadError
from .payload import parse_message
from .writer import ingest_messages

__all__ = ["handle_batch", "handle_message_received", "handle_message_sent"]


def _ingest_one(event) -> int | None:
    return ingest_messages(database, [parse_message(event.payload, event.event_type)])[0]


def handle_message_received(event) -> int | None:
    """Queue handler for ``message.received``: validate, then ingest ``event.payload``."""
    return _ingest_one(event)


def handle_message_sent(event) -> int | None:
    """Queue handler for ``message.sent``: validate, then ingest ``event.payload``."""
    return _ingest_one(event)


def handle_batch(events: Sequence) -> dict[int, PayloadError]:
    """Batch handler of both event types: ingest every valid event in one go.

    Returns the events refused (invalid payload) by id with their error;
    nothing of theirs was written. Any other error propagates (the worker
    then redoes the batch event by event).
    """
    refused: dict[int, PayloadError] = {}
    valid = []
    for event in events:
        try:
            valid.append(parse_message(event.payload, event.event_type))
        except PayloadError as exc:
            refused[event.id] = exc
    ingest_messages(database, valid)
    return refused
