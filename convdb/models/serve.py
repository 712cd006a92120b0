"""The webhook receiver's tables (migration 020): endpoints and replay nonces."""

from __future__ import annotations

import peewee

from .base import BaseModel
from .core import Provider
from .fields import BigIdentityField, TimestampTZField


class WebhookEndpoint(BaseModel):
    """A URL ``convdb serve`` accepts: a provider, its adapter and a hashed token.

    ``token_hash`` is the SHA-256 (hex) of the URL's token; the token itself
    is shown once, by ``convdb providers add``, and never stored.
    """

    id = BigIdentityField()
    provider = peewee.ForeignKeyField(Provider, backref="webhook_endpoints", on_delete="CASCADE")
    adapter = peewee.TextField()
    token_hash = peewee.TextField(unique=True)
    token_hint = peewee.TextField()
    created_at = TimestampTZField(constraints=[peewee.SQL("DEFAULT now()")])

    class Meta:
        table_name = "webhook_endpoints"


class WebhookNonce(BaseModel):
    """A one-time value an endpoint's adapter has accepted, until ``expires_at``."""

    endpoint = peewee.ForeignKeyField(WebhookEndpoint, on_delete="CASCADE")
    nonce = peewee.TextField()
    idempotency_key = peewee.TextField()
    expires_at = TimestampTZField()

    class Meta:
        table_name = "webhook_nonces"
        primary_key = peewee.CompositeKey("endpoint", "nonce")


class WebhookEndpointDeliveries(BaseModel):
    """Events an endpoint stored per hour, one row per receiver backend (migration 050).

    Kept by the receiver's group commit; read by the operator console.
    """

    endpoint = peewee.ForeignKeyField(WebhookEndpoint, on_delete="CASCADE")
    hour = TimestampTZField()
    shard = peewee.IntegerField()
    deliveries = peewee.BigIntegerField()
    last_delivery_at = TimestampTZField()

    class Meta:
        table_name = "webhook_endpoint_deliveries"
        primary_key = peewee.CompositeKey("endpoint", "hour", "shard")
