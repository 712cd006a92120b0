"""Peewee models of every convdb table, bound to :data:`convdb.db.database`."""

from .base import BaseModel
from .core import (
    DIRECTIONS,
    ENDPOINT_KINDS,
    MESSAGE_STATUSES,
    PARTICIPANT_ROLES,
    PROVIDER_KINDS,
    Attachment,
    Contact,
    ContactAddress,
    Conversation,
    ConversationParticipant,
    Customer,
    EndpointMapping,
    Message,
    MessageAttachment,
    MessageStatusReport,
    Provider,
)
from .dedup import AttachmentUrl, EmailAddress, EmailBody, PhoneNumber, XmsBody
from .privacy import ErasedEventKey, Erasure, RetentionPolicy
from .queue import EVENT_STATUSES, InboundEvent
from .serve import WebhookEndpoint, WebhookEndpointDeliveries, WebhookNonce, WebhookReplayKey

CORE_MODELS = (
    Customer,
    Provider,
    EndpointMapping,
    Contact,
    ContactAddress,
    Conversation,
    ConversationParticipant,
    Message,
    Attachment,
    MessageAttachment,
    MessageStatusReport,
)
DEDUP_MODELS = (EmailBody, XmsBody, PhoneNumber, EmailAddress, AttachmentUrl)
QUEUE_MODELS = (InboundEvent,)
SERVE_MODELS = (WebhookEndpoint, WebhookNonce, WebhookEndpointDeliveries, WebhookReplayKey)
PRIVACY_MODELS = (Erasure, RetentionPolicy, ErasedEventKey)
ALL_MODELS = CORE_MODELS + DEDUP_MODELS + QUEUE_MODELS + SERVE_MODELS + PRIVACY_MODELS

__all__ = [
    "ALL_MODELS",
    "CORE_MODELS",
    "DEDUP_MODELS",
    "DIRECTIONS",
    "ENDPOINT_KINDS",
    "EVENT_STATUSES",
    "MESSAGE_STATUSES",
    "PARTICIPANT_ROLES",
    "PRIVACY_MODELS",
    "PROVIDER_KINDS",
    "QUEUE_MODELS",
    "SERVE_MODELS",
    "Attachment",
    "AttachmentUrl",
    "BaseModel",
    "Contact",
    "ContactAddress",
    "Conversation",
    "ConversationParticipant",
    "Customer",
    "EmailAddress",
    "EmailBody",
    "EndpointMapping",
    "ErasedEventKey",
    "Erasure",
    "InboundEvent",
    "Message",
    "MessageAttachment",
    "MessageStatusReport",
    "PhoneNumber",
    "Provider",
    "RetentionPolicy",
    "WebhookEndpoint",
    "WebhookEndpointDeliveries",
    "WebhookNonce",
    "WebhookReplayKey",
    "XmsBody",
]
