"""Views for analysts: ``conversation_overview`` and ``conversation_messages``.

Both aggregate per row through LATERAL subqueries that walk an index
(``messages_conversation_sent_at_idx``, ``conversation_participants`` primary
key, ``message_attachments`` primary key) instead of aggregating every
message, so filtering on one conversation or customer stays fast.
"""

from convdb.sqlutil import run_sql

CONVERSATION_OVERVIEW = """
CREATE OR REPLACE VIEW conversation_overview AS
SELECT c.id                  AS conversation_id,
       c.customer_id         AS customer_id,
       m.last_message_at     AS last_message_at,
       m.message_count       AS message_count,
       p.participant_count   AS participant_count
  FROM conversations c
 CROSS JOIN LATERAL (
        SELECT max(sent_at) AS last_message_at, count(*) AS message_count
          FROM messages
         WHERE messages.conversation_id = c.id
       ) m
 CROSS JOIN LATERAL (
        SELECT count(*) AS participant_count
          FROM conversation_participants cp
         WHERE cp.conversation_id = c.id
       ) p
"""

CONVERSATION_MESSAGES = """
CREATE OR REPLACE VIEW conversation_messages AS
SELECT m.conversation_id                AS conversation_id,
       m.id                             AS message_id,
       m.direction                      AS direction,
       m.provider_id                    AS provider_id,
       m.sent_at                        AS sent_at,
       m.received_at                    AS received_at,
       COALESCE(eb.raw, xb.raw)         AS body_text,
       a.attachments_count              AS attachments_count
  FROM messages m
  LEFT JOIN email_bodies eb ON eb.id = m.email_body_id
  LEFT JOIN xms_bodies xb ON xb.id = m.xms_body_id
 CROSS JOIN LATERAL (
        SELECT count(*) AS attachments_count
          FROM message_attachments ma
         WHERE ma.message_id = m.id
       ) a
"""


def migrate(migrator, database, *, fake=False):
    run_sql(migrator, CONVERSATION_OVERVIEW)
    run_sql(migrator, CONVERSATION_MESSAGES)


def rollback(migrator, database, *, fake=False):
    run_sql(migrator, "DROP VIEW conversation_messages")
    run_sql(migrator, "DROP VIEW conversation_overview")
