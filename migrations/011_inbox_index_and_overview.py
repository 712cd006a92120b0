"""The inbox index, and ``conversation_overview`` reading the counters of 010.

The inbox page, a customer's 50 most recently active conversations::

    SELECT * FROM conversation_overview
     WHERE customer_id = %s
     ORDER BY last_message_at DESC NULLS LAST, conversation_id DESC
     LIMIT 50

walks ``conversations_inbox_idx`` and stops after 50 rows, however many
conversations and messages the customer has. Conversations without messages
sort last; ``conversation_id`` breaks ties, so pages are stable.

``conversations_customer_id_idx`` (003) is dropped: the inbox index starts
with ``customer_id`` and serves the same lookups (and the cascade from
``customers``), and every index less makes the counter updates cheaper (an
update that changes ``last_message_at`` writes a new entry into every index).

The view keeps its column names and types; rollback restores 006's definition
verbatim.
"""

from convdb.sqlutil import run_sql

INBOX_INDEX = """
CREATE INDEX conversations_inbox_idx
    ON conversations (customer_id, last_message_at DESC NULLS LAST, id DESC);
DROP INDEX conversations_customer_id_idx
"""

DROP_INBOX_INDEX = """
CREATE INDEX conversations_customer_id_idx ON conversations (customer_id);
DROP INDEX conversations_inbox_idx
"""

CONVERSATION_OVERVIEW = """
CREATE OR REPLACE VIEW conversation_overview AS
SELECT c.id                  AS conversation_id,
       c.customer_id         AS customer_id,
       c.last_message_at     AS last_message_at,
       c.message_count       AS message_count,
       c.participant_count   AS participant_count
  FROM conversations c
"""

# 006_views.CONVERSATION_OVERVIEW, verbatim.
CONVERSATION_OVERVIEW_006 = """
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


def migrate(migrator, database, *, fake=False):
    run_sql(migrator, INBOX_INDEX)
    run_sql(migrator, CONVERSATION_OVERVIEW)


def rollback(migrator, database, *, fake=False):
    run_sql(migrator, CONVERSATION_OVERVIEW_006)
    run_sql(migrator, DROP_INBOX_INDEX)
