"""Core tables: customers, their providers and endpoints, contacts, conversations.

These classes are the Python description of the schema created by the
migrations in ``migrations/``; ``tests/db/test_schema.py`` fails when the two
drift apart. Enumerations are ``TEXT`` with a ``CHECK`` in the database; the
allowed values are the tuples below.
"""

from __future__ import annotations

import peewee

from .base import BaseModel
from .dedup import AttachmentUrl, EmailAddress, EmailBody, PhoneNumber, XmsBody
from .fields import BigIdentityField, TimestampTZField

PROVIDER_KINDS = ("sms", "mms", "email", "voice", "voicemail")
ENDPOINT_KINDS = ("sms", "mms", "email")
PARTICIPANT_ROLES = ("customer", "contact")
DIRECTIONS = ("inbound", "outbound")
#: Delivery statuses in rank order (``docs/status.md``); the same as
#: :data:`convdb.ingest.payload.STATUSES`.
MESSAGE_STATUSES = ("queued", "sent", "delivered", "failed", "read")


class Customer(BaseModel):
    """A customer; ``key`` is the canonical event's ``customer.key`` (unique, optional)."""

    id = BigIdentityField()
    name = peewee.TextField()
    key = peewee.TextField(null=True, unique=True)
    created_at = TimestampTZField(constraints=[peewee.SQL("DEFAULT now()")])
    updated_at = TimestampTZField(constraints=[peewee.SQL("DEFAULT now()")])

    class Meta:
        table_name = "customers"


class Provider(BaseModel):
    """A channel account of a customer; ``credentials_ref`` names a secret held elsewhere."""

    id = BigIdentityField()
    customer = peewee.ForeignKeyField(Customer, backref="providers", on_delete="CASCADE")
    kind = peewee.TextField()
    name = peewee.TextField()
    credentials_ref = peewee.TextField(null=True)
    created_at = TimestampTZField(constraints=[peewee.SQL("DEFAULT now()")])
    updated_at = TimestampTZField(constraints=[peewee.SQL("DEFAULT now()")])

    class Meta:
        table_name = "providers"
        indexes = ((("customer", "kind", "name"), True),)


class EndpointMapping(BaseModel):
    """One of the customer's own phone numbers or mailboxes."""

    id = BigIdentityField()
    customer = peewee.ForeignKeyField(Customer, backref="endpoints", on_delete="CASCADE")
    provider = peewee.ForeignKeyField(Provider, backref="endpoints", on_delete="CASCADE")
    kind = peewee.TextField()
    address = peewee.TextField()
    normalized = peewee.TextField()
    hash = peewee.BigIntegerField()
    created_at = TimestampTZField(constraints=[peewee.SQL("DEFAULT now()")])

    class Meta:
        table_name = "endpoint_mappings"


class Contact(BaseModel):
    id = BigIdentityField()
    customer = peewee.ForeignKeyField(Customer, backref="contacts", on_delete="CASCADE")
    display_name = peewee.TextField(null=True)
    created_at = TimestampTZField(constraints=[peewee.SQL("DEFAULT now()")])
    updated_at = TimestampTZField(constraints=[peewee.SQL("DEFAULT now()")])

    class Meta:
        table_name = "contacts"


class ContactAddress(BaseModel):
    """Links a contact to one normalized address: an email address or a phone number.

    Unique per customer, so ingestion finds a contact by its address.
    """

    id = BigIdentityField()
    customer = peewee.ForeignKeyField(Customer, on_delete="CASCADE")
    contact = peewee.ForeignKeyField(Contact, backref="addresses", on_delete="CASCADE")
    email_address = peewee.ForeignKeyField(EmailAddress, null=True)
    phone_number = peewee.ForeignKeyField(PhoneNumber, null=True)
    created_at = TimestampTZField(constraints=[peewee.SQL("DEFAULT now()")])

    class Meta:
        table_name = "contact_addresses"
        indexes = (
            (("customer", "email_address"), True),
            (("customer", "phone_number"), True),
        )


class Conversation(BaseModel):
    """A conversation of a customer.

    ``key`` is the canonical event's ``conversation_key``; ``thread_key`` groups
    messages without one (channel and both normalized endpoints, as a JSON
    array). Each is unique per customer; either may be NULL.
    """

    id = BigIdentityField()
    customer = peewee.ForeignKeyField(Customer, backref="conversations", on_delete="CASCADE")
    topic = peewee.TextField(null=True)
    key = peewee.TextField(null=True)
    thread_key = peewee.TextField(null=True)
    created_at = TimestampTZField(constraints=[peewee.SQL("DEFAULT now()")])
    updated_at = TimestampTZField(constraints=[peewee.SQL("DEFAULT now()")])
    # Counters kept by the database's triggers (003_baseline_counters), whoever writes
    # messages and participants: read them, never set them.
    last_message_at = TimestampTZField(null=True)
    message_count = peewee.BigIntegerField(constraints=[peewee.SQL("DEFAULT 0")])
    participant_count = peewee.BigIntegerField(constraints=[peewee.SQL("DEFAULT 0")])

    class Meta:
        table_name = "conversations"
        indexes = (
            (("customer", "key"), True),
            (("customer", "thread_key"), True),
        )


class ConversationParticipant(BaseModel):
    conversation = peewee.ForeignKeyField(Conversation, backref="participants", on_delete="CASCADE")
    contact = peewee.ForeignKeyField(Contact, backref="participations", on_delete="CASCADE")
    role = peewee.TextField()

    class Meta:
        table_name = "conversation_participants"
        primary_key = peewee.CompositeKey("conversation", "contact", "role")


class Message(BaseModel):
    """A message; its body is in ``email_bodies`` or ``xms_bodies``.

    ``email_body_id`` and ``xms_body_id`` are real foreign keys (at most one is
    set); ``body_id`` is a column the database generates from them, kept for
    readers of the original polymorphic design. Never write ``body_id``.
    """

    id = BigIdentityField()
    conversation = peewee.ForeignKeyField(Conversation, backref="messages", on_delete="CASCADE")
    provider = peewee.ForeignKeyField(Provider, backref="messages")
    direction = peewee.TextField()
    provider_message_id = peewee.TextField(null=True)
    email_body = peewee.ForeignKeyField(EmailBody, null=True)
    xms_body = peewee.ForeignKeyField(XmsBody, null=True)
    # who sent it: the contact who wrote (inbound), the customer's own (outbound); migration 053
    sender = peewee.ForeignKeyField(Contact, null=True, backref="sent", on_delete="SET NULL")
    body_id = peewee.BigIntegerField(null=True)
    sent_at = TimestampTZField()
    received_at = TimestampTZField(null=True)
    created_at = TimestampTZField(constraints=[peewee.SQL("DEFAULT now()")])
    # Delivery status (migration 055), kept by the message.status handler: read them.
    status = peewee.TextField(null=True)
    status_at = TimestampTZField(null=True)

    class Meta:
        table_name = "messages"
        indexes = ((("provider", "provider_message_id"), True),)


class MessageStatusReport(BaseModel):
    """One provider report about an outbound message, kept once (migration 055).

    ``message`` is NULL while the message is not stored yet (an early report);
    ``status`` is NULL for a report that changes nothing; ``word`` is the
    provider's own word. Written by :mod:`convdb.ingest.status` only.
    """

    id = BigIdentityField()
    provider = peewee.ForeignKeyField(Provider, on_delete="CASCADE")
    provider_message_id = peewee.TextField()
    message = peewee.ForeignKeyField(
        Message, null=True, backref="status_reports", on_delete="CASCADE"
    )
    event_key = peewee.TextField(null=True)
    word = peewee.TextField()
    status = peewee.TextField(null=True)
    at = TimestampTZField()
    detail = peewee.TextField(null=True)
    received_at = TimestampTZField(constraints=[peewee.SQL("DEFAULT now()")])

    class Meta:
        table_name = "message_status_reports"


class Attachment(BaseModel):
    id = BigIdentityField()
    url = peewee.ForeignKeyField(AttachmentUrl, backref="attachments")
    content_type = peewee.TextField(null=True)
    size = peewee.BigIntegerField(null=True)  # bytes, when convdb stored them (migration 021)
    filename = peewee.TextField(null=True)  # as the sender named it (migration 051)
    created_at = TimestampTZField(constraints=[peewee.SQL("DEFAULT now()")])

    class Meta:
        table_name = "attachments"


class MessageAttachment(BaseModel):
    message = peewee.ForeignKeyField(Message, backref="attachment_links", on_delete="CASCADE")
    attachment = peewee.ForeignKeyField(Attachment, backref="message_links")

    class Meta:
        table_name = "message_attachments"
        primary_key = peewee.CompositeKey("message", "attachment")
