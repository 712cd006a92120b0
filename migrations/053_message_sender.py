"""``messages.sender_id``: the contact who sent each message.

Erasing a person ("every message they sent") and search need the sender;
until now a message recorded only its conversation, whose participants are
per conversation. ``sender_id`` references ``contacts`` (``ON DELETE SET
NULL``: deleting a contact some other way leaves its messages, unattributed);
for an inbound message it is the contact who wrote, for an outbound one the
contact that stands for the customer's own address (role ``customer``).
Ingestion sets it for every new message (the payload's ``from``).

Old rows are filled in, in this order:

1. from the queue's payloads still stored (``inbound_events`` of type
   ``message.received`` / ``message.sent``, any status): the payload's
   ``from`` address, normalized in SQL, and that customer's contact with that
   address; the message by (customer, provider, ``message_id``);
2. otherwise, when the conversation has exactly one participant on the
   sending side (role ``contact`` for inbound, ``customer`` for outbound),
   that participant.

What remains NULL is unknown: a message of a group conversation whose event
was purged, or whose ``from`` is a phone number that SQL cannot normalize
(a national number without its country code). Erasure treats a NULL sender
as "not known to be theirs" (``docs/privacy.md``).

``messages_sender_id_idx`` is the reverse lookup erasure needs (a contact's
messages); partial, since unknown senders are never looked up.
"""

from convdb.migrate.sql import run_sql

ADD_SENDER = """
ALTER TABLE messages
    ADD COLUMN sender_id BIGINT REFERENCES contacts (id) ON DELETE SET NULL
"""

SENDER_INDEX = """
CREATE INDEX messages_sender_id_idx ON messages (sender_id) WHERE sender_id IS NOT NULL
"""

# 1. The queue's payloads: the sender is the payload's "from", whatever the direction.
BACKFILL_FROM_EVENTS = """
UPDATE messages m
   SET sender_id = s.contact_id
  FROM (
    SELECT DISTINCT ON (m.id) m.id AS message_id, ca.contact_id
      FROM inbound_events e
      JOIN customers cu ON cu.key = e.payload -> 'customer' ->> 'key'
      JOIN providers p ON p.customer_id = cu.id
                      AND p.kind = e.payload -> 'provider' ->> 'kind'
                      AND p.name = e.payload -> 'provider' ->> 'name'
      JOIN messages m ON m.provider_id = p.id
                     AND m.provider_message_id = e.payload ->> 'message_id'
      LEFT JOIN email_addresses ea
             ON p.kind = 'email'
            AND ea.hash = convdb_hash_v1(convdb_normalize_email_v1(
                    e.payload -> 'from' ->> 'address'))
      LEFT JOIN phone_numbers pn
             ON p.kind <> 'email'
            AND pn.hash = convdb_hash_v1(convdb_normalize_phone_v2(
                    e.payload -> 'from' ->> 'address', refuse => false))
      JOIN contact_addresses ca
        ON ca.customer_id = cu.id
       AND (ca.email_address_id = ea.id OR ca.phone_number_id = pn.id)
     WHERE e.event_type IN ('message.received', 'message.sent')
       AND jsonb_typeof(e.payload -> 'from') = 'object'
     ORDER BY m.id, e.id DESC
  ) s
 WHERE m.id = s.message_id AND m.sender_id IS NULL
"""

# 2. The one participant of the sending side.
BACKFILL_FROM_PARTICIPANTS = """
UPDATE messages m
   SET sender_id = one.contact_id
  FROM (
    SELECT conversation_id, role, min(contact_id) AS contact_id
      FROM conversation_participants
     GROUP BY conversation_id, role
    HAVING count(*) = 1
  ) one
 WHERE m.sender_id IS NULL
   AND one.conversation_id = m.conversation_id
   AND one.role = CASE m.direction WHEN 'inbound' THEN 'contact' ELSE 'customer' END
"""


def migrate(migrator, database, *, fake=False):
    run_sql(migrator, ADD_SENDER)
    run_sql(migrator, BACKFILL_FROM_EVENTS)
    run_sql(migrator, BACKFILL_FROM_PARTICIPANTS)
    run_sql(migrator, SENDER_INDEX)


def rollback(migrator, database, *, fake=False):
    run_sql(migrator, "ALTER TABLE messages DROP COLUMN sender_id")
