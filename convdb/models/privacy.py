"""Privacy tables (migration 054): the audit of erasures, retention policies, erased keys."""

from __future__ import annotations

import peewee
from playhouse.postgres_ext import BinaryJSONField

from .base import BaseModel
from .core import Customer
from .fields import BigIdentityField, TimestampTZField

ERASURE_KINDS = ("contact", "customer", "retention")


class Erasure(BaseModel):
    """One erasure or retention run: ids, counts and times, never a person's data."""

    id = BigIdentityField()
    kind = peewee.TextField()
    customer_id = peewee.BigIntegerField()
    customer_key = peewee.TextField(null=True)
    contact_id = peewee.BigIntegerField(null=True)
    counts = BinaryJSONField()
    started_at = TimestampTZField()
    finished_at = TimestampTZField(constraints=[peewee.SQL("DEFAULT now()")])

    class Meta:
        table_name = "erasures"


class RetentionPolicy(BaseModel):
    """How many days after ``sent_at`` a customer's messages are kept."""

    customer = peewee.ForeignKeyField(Customer, primary_key=True, on_delete="CASCADE")
    days = peewee.IntegerField()
    updated_at = TimestampTZField(constraints=[peewee.SQL("DEFAULT now()")])

    class Meta:
        table_name = "retention_policies"


class ErasedEventKey(BaseModel):
    """The SHA-256 of an erased event's idempotency key, kept for the replay window."""

    key_hash = peewee.BlobField(primary_key=True)
    expires_at = TimestampTZField()

    class Meta:
        table_name = "erased_event_keys"
