"""``make demo``: migrate, load a small sample conversation set, print the overview.

The sample goes through the models and the dedup path exactly as an
application would write it: customers, providers, the customers' own
endpoints, contacts, conversations, participants, messages with bodies (one
body repeated, stored once) and attachments.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from . import dedup
from . import migrate as migrate_lib
from .db import closing, connect, resolve_url
from .models import (
    Attachment,
    Contact,
    Conversation,
    ConversationParticipant,
    Customer,
    EndpointMapping,
    Message,
    MessageAttachment,
    Provider,
)
from .report import format_table

T0 = dt.datetime(2025, 11, 5, 8, 0, tzinfo=dt.UTC)

# (customer, provider kind, customer endpoint, contact name, contact address, topic,
#  [(minutes after T0, direction, body, attachment urls)])
SAMPLE = [
    ("Acme, Inc.", "email", "support@acme.example", "Jane Doe", "Jane.Doe@Example.com",
     "Onboarding", [
         (0, "inbound", "Hello,   we need help\n", ["https://files.example/a.png"]),
         (12, "outbound", "Happy to help! What is blocking you?", []),
         (30, "inbound", "The import fails.", ["https://files.example/log.txt"]),
     ]),
    ("Acme, Inc.", "sms", "+14155550100", "Raj Patel", "(415) 555-2671", None, [
        (5, "inbound", "Is my order shipped?", []),
        (6, "outbound", "Yes, tracking sent by email.", []),
    ]),
    ("Globex", "sms", "+442079460000", "Ana Lima", "+44 20 7946 0958", "Delivery", [
        (60, "inbound", "Thanks!", []),
        (61, "outbound", "Thanks!", []),  # same body as above: stored once
    ]),
    ("Globex", "email", "hello@globex.example", "Ana Lima", "ana@lima.example", None, [
        (90, "inbound", "Thanks!", ["https://files.example/a.png"]),
    ]),
]


def load_sample(db) -> int:
    """Insert the sample set; returns the number of messages written."""
    count = 0
    customers: dict[str, Customer] = {}
    with db.atomic():
        for name, kind, own, contact_name, address, topic, messages in SAMPLE:
            customer = customers.get(name) or Customer.create(name=name)
            customers[name] = customer
            provider = Provider.create(customer=customer, kind=kind, name=f"{kind}-main")
            if kind == "email":
                normalized = dedup.normalize_email(own)
            else:
                normalized = dedup.normalize_phone(own)
            EndpointMapping.create(
                customer=customer, provider=provider, kind=kind, address=own,
                normalized=normalized, hash=dedup.dedup_hash(normalized),
            )
            if kind == "email":
                dedup.intern_email_address(db, address)
            else:
                dedup.intern_phone_number(db, address)
            us = Contact.create(customer=customer, display_name=name)
            them = Contact.create(customer=customer, display_name=contact_name)
            conversation = Conversation.create(customer=customer, topic=topic)
            ConversationParticipant.create(conversation=conversation, contact=us, role="customer")
            ConversationParticipant.create(conversation=conversation, contact=them, role="contact")
            for minutes, direction, body, urls in messages:
                sent = T0 + dt.timedelta(minutes=minutes)
                body_field = (
                    {"email_body": dedup.intern_email_body(db, body)}
                    if kind == "email"
                    else {"xms_body": dedup.intern_xms_body(db, body)}
                )
                message = Message.create(
                    conversation=conversation, provider=provider, direction=direction,
                    sent_at=sent, received_at=sent + dt.timedelta(seconds=5), **body_field,
                )
                for url in urls:
                    attachment = Attachment.create(url=dedup.intern_attachment_url(db, url))
                    MessageAttachment.create(message=message, attachment=attachment)
                count += 1
    return count


OVERVIEW = """
SELECT o.conversation_id, cu.name, c.topic, o.message_count, o.participant_count,
       o.last_message_at
  FROM conversation_overview o
  JOIN conversations c ON c.id = o.conversation_id
  JOIN customers cu ON cu.id = o.customer_id
 ORDER BY o.last_message_at DESC NULLS LAST, o.conversation_id
"""


def run(url: str | None = None, echo: Callable[[str], None] = print) -> None:
    url = url or resolve_url()
    migrate_lib.run(url, echo=echo)
    with closing(connect(url)) as db:
        if Customer.select().where(Customer.name == SAMPLE[0][0]).exists():
            echo("demo: the sample set is already loaded")
        else:
            written = load_sample(db)
            echo(f"demo: wrote {written} messages in {len(SAMPLE)} conversations")
        rows = db.execute_sql(OVERVIEW).fetchall()
        echo("")
        echo("conversation_overview")
        echo(format_table(
            ["conversation", "customer", "topic", "messages", "participants", "last message"],
            rows,
        ))
