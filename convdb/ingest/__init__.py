"""Ingestion of the canonical ``message.received`` / ``message.sent`` / ``message.status`` events.

::

    from convdb.ingest import ingest_message, ingest_messages, parse_message
    with db.atomic():
        message_id = ingest_message(db, parse_message(payload))
        ids = ingest_messages(db, [parse_message(p) for p in payloads])

- :mod:`~convdb.ingest.payload`: :func:`parse_message` validates a payload
  into a :class:`CanonicalMessage`, or raises
  :class:`~convdb.exceptions.PayloadError` naming the bad field (the core's
  validators, :func:`validate_received` and :func:`validate_sent`, call it
  for every door: :mod:`convdb.queue.acceptance`);
- :mod:`~convdb.ingest.writer`: :func:`ingest_messages` writes a batch
  (:func:`ingest_message` is a batch of one), every rule in one place;
- :mod:`~convdb.ingest.statements`: its set-based statements, prepared once
  per connection, and the find-or-create and dedup rules they share;
- :mod:`~convdb.ingest.handlers`: the queue handlers;
- :mod:`~convdb.ingest.status`: delivery status (``message.status``): each
  report kept once, folded into ``messages.status``, early ones applied
  when their message arrives.

The conversation counters are the database's (statement-level triggers),
for this writer as for plain SQL. ``docs/ingestion.md`` has the whole story.
"""

from .handlers import handle_batch, handle_message_received, handle_message_sent
from .payload import (
    EVENT_TYPES,
    STATUSES,
    Address,
    CanonicalMessage,
    StatusReport,
    parse_event,
    parse_message,
    parse_status,
    validate_received,
    validate_sent,
    validate_status,
)
from .writer import ingest_message, ingest_messages

__all__ = [
    "EVENT_TYPES",
    "STATUSES",
    "Address",
    "CanonicalMessage",
    "StatusReport",
    "handle_batch",
    "handle_message_received",
    "handle_message_sent",
    "ingest_message",
    "ingest_messages",
    "parse_event",
    "parse_message",
    "parse_status",
    "validate_received",
    "validate_sent",
    "validate_status",
]
