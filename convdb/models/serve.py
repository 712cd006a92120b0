"""The webhook receiver's tables: endpoints (020), replay nonces and the key that scopes
them (020, 032), and per-endpoint delivery counts (050)."""

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
    """A one-time value spent under ``scope`` until ``expires_at`` (migration 032).

    ``scope`` is the HMAC-SHA256 (hex) of the signing key the request was
    authenticated with, under :class:`WebhookReplayKey`, or ``endpoint:<id>``
    for a request authenticated by its path token alone; ``endpoint`` records
    where it was spent (NULL once that endpoint is removed).
    """

    scope = peewee.TextField()
    nonce = peewee.TextField()
    endpoint = peewee.ForeignKeyField(WebhookEndpoint, null=True, on_delete="SET NULL")
    idempotency_key = peewee.TextField()
    expires_at = TimestampTZField()

    class Meta:
        table_name = "webhook_nonces"
        primary_key = peewee.CompositeKey("scope", "nonce")


class WebhookReplayKey(BaseModel):
    """The database's one replay key: 32 random bytes that nonce scopes are keyed with."""

    id = peewee.BooleanField(primary_key=True, default=True)
    key = peewee.BlobField()
    created_at = TimestampTZField(constraints=[peewee.SQL("DEFAULT now()")])

    class Meta:
        table_name = "webhook_replay_key"


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
