"""Dedup: every email address, phone number, body and attachment URL stored once.

- :mod:`convdb.dedup.normalize`: the normalized form of each kind of value and
  its 64-bit key (pure functions, the twins of the SQL trigger functions);
- :mod:`convdb.dedup.interning`: values to row ids, any batch size, collisions
  detected.

The tables' models are in :mod:`convdb.models.dedup`::

    from convdb.dedup import intern_email_address, normalize_email

    normalize_email("  Jane.Doe@Example.COM\\n")   # 'jane.doe@example.com'
    row_id = intern_email_address(db, "Jane.Doe@Example.com")
"""

from .interning import (
    ATTACHMENT_URLS,
    COLLISION_SQLSTATE,
    EMAIL_ADDRESSES,
    EMAIL_BODIES,
    PHONE_NUMBERS,
    XMS_BODIES,
    DedupTable,
    intern_attachment_url,
    intern_email_address,
    intern_email_body,
    intern_phone_number,
    intern_values,
    intern_xms_body,
)
from .normalize import (
    WHITESPACE,
    dedup_hash,
    normalize_body,
    normalize_email,
    normalize_phone,
    normalize_url,
)

__all__ = [
    "ATTACHMENT_URLS",
    "COLLISION_SQLSTATE",
    "EMAIL_ADDRESSES",
    "EMAIL_BODIES",
    "PHONE_NUMBERS",
    "WHITESPACE",
    "XMS_BODIES",
    "DedupTable",
    "dedup_hash",
    "intern_attachment_url",
    "intern_email_address",
    "intern_email_body",
    "intern_phone_number",
    "intern_values",
    "intern_xms_body",
    "normalize_body",
    "normalize_email",
    "normalize_phone",
    "normalize_url",
]
