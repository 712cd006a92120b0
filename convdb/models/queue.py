"""The queue table: webhook receivers insert, ``convdb queue-worker`` drains."""

from __future__ import annotations

import peewee
from playhouse.postgres_ext import BinaryJSONField

from ..fields import BigIdentityField, TimestampTZField
from .base import BaseModel

EVENT_STATUSES = ("pending", "processing", "done", "dead")


class InboundEvent(BaseModel):
    """One webhook event.

    ``status``: ``pending`` (waiting, or retrying after ``available_at``),
    ``processing`` (claimed by ``locked_by`` until ``locked_until``), ``done``,
    ``dead`` (failed for good; ``last_error`` says why).
    """

    id = BigIdentityField()
    event_type = peewee.TextField()
    payload = BinaryJSONField()
    idempotency_key = peewee.TextField(null=True, unique=True)
    received_at = TimestampTZField(constraints=[peewee.SQL("DEFAULT now()")])
    available_at = TimestampTZField(constraints=[peewee.SQL("DEFAULT now()")])
    attempts = peewee.IntegerField(default=0)
    status = peewee.TextField(default="pending")
    last_error = peewee.TextField(null=True)
    locked_by = peewee.TextField(null=True)
    locked_until = TimestampTZField(null=True)
    processed_at = TimestampTZField(null=True)

    class Meta:
        table_name = "inbound_events"
