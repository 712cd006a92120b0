"""Dedup tables: every body, phone number, email address and URL stored once.

Each row is keyed by a 64-bit hash of its normalized value (``UNIQUE(hash)``);
see :mod:`convdb.dedup` for the normalization and the key, which the database
triggers reproduce exactly for plain SQL inserts.
"""

from __future__ import annotations

import peewee

from .base import BaseModel
from .fields import BigIdentityField


class EmailBody(BaseModel):
    id = BigIdentityField()
    raw = peewee.TextField()
    hash = peewee.BigIntegerField(unique=True)
    normalized = peewee.TextField()

    class Meta:
        table_name = "email_bodies"


class XmsBody(BaseModel):
    """SMS and MMS body text."""

    id = BigIdentityField()
    raw = peewee.TextField()
    hash = peewee.BigIntegerField(unique=True)
    normalized = peewee.TextField()

    class Meta:
        table_name = "xms_bodies"


class PhoneNumber(BaseModel):
    id = BigIdentityField()
    raw = peewee.TextField()
    hash = peewee.BigIntegerField(unique=True)
    e164 = peewee.TextField()

    class Meta:
        table_name = "phone_numbers"


class EmailAddress(BaseModel):
    id = BigIdentityField()
    raw = peewee.TextField()
    hash = peewee.BigIntegerField(unique=True)
    lowered = peewee.TextField()

    class Meta:
        table_name = "email_addresses"


class AttachmentUrl(BaseModel):
    """An attachment URL; ``normalized`` is the trimmed URL the key is computed from."""

    id = BigIdentityField()
    raw = peewee.TextField()
    hash = peewee.BigIntegerField(unique=True)
    normalized = peewee.TextField()

    class Meta:
        table_name = "attachment_urls"
