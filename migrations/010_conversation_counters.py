"""Counters on ``conversations``, kept by the database: ``last_message_at``,
``message_count``, ``participant_count``.

An inbox ("a customer's 50 most recently active conversations") cannot
aggregate messages per query at scale: the proof of concept's views took up to
280 ms per inbox at 1,000,000 messages, counters read through an index answer
in well under a millisecond. Triggers maintain them, so rows written by plain
SQL (an analyst's loader, psql) count exactly like rows written by convdb.

The triggers are statement-level with transition tables: a batch ``INSERT``
of 1,000 messages updates each touched conversation once, not 1,000 times.

- ``messages``: INSERT adds to ``message_count`` and raises
  ``last_message_at``; DELETE subtracts and recomputes ``last_message_at``
  (``max(sent_at)`` through ``messages_conversation_sent_at_idx``); UPDATE
  handles rows that move to another conversation or change ``sent_at``.
- ``conversation_participants``: INSERT, DELETE and UPDATE adjust
  ``participant_count`` (participant rows, as the proof of concept counted).
- TRUNCATE of either table resets its counters.

Locking: each trigger first locks the touched conversations in id order
(``FOR NO KEY UPDATE``, which does not conflict with the ``FOR KEY SHARE``
that foreign-key checks take), so concurrent writers into overlapping
conversations queue instead of deadlocking; the recomputing statements run
after that lock, in a fresh snapshot (READ COMMITTED), and so see every
committed message. Writers into one conversation serialize on its row.

Counters changing also bump ``conversations.updated_at`` (004's trigger): the
row changed.

Existing rows are backfilled under a SHARE lock on both source tables.
"""

from convdb.sqlutil import run_sql

COLUMNS = """
ALTER TABLE conversations
    ADD COLUMN last_message_at    TIMESTAMPTZ,
    ADD COLUMN message_count      BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN participant_count  BIGINT NOT NULL DEFAULT 0
"""

# Shared by every trigger below: lock the conversations a statement touched,
# in id order, before changing any of them.
_LOCK = """
    PERFORM 1 FROM conversations c
     WHERE c.id IN (SELECT DISTINCT t.conversation_id FROM {rows} t)
     ORDER BY c.id
       FOR NO KEY UPDATE;
"""

CONVDB_MESSAGES_INSERTED_V1 = f"""
CREATE OR REPLACE FUNCTION convdb_messages_inserted_v1() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
{_LOCK.format(rows="new_rows")}
    UPDATE conversations c
       SET message_count = c.message_count + d.n,
           last_message_at = GREATEST(c.last_message_at, d.last_sent_at)
      FROM (SELECT conversation_id, count(*) AS n, max(sent_at) AS last_sent_at
              FROM new_rows
             GROUP BY conversation_id) d
     WHERE c.id = d.conversation_id;
    RETURN NULL;
END
$$
"""

CONVDB_MESSAGES_DELETED_V1 = f"""
CREATE OR REPLACE FUNCTION convdb_messages_deleted_v1() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
{_LOCK.format(rows="old_rows")}
    UPDATE conversations c
       SET message_count = c.message_count - d.n,
           last_message_at = (SELECT max(m.sent_at) FROM messages m
                               WHERE m.conversation_id = c.id)
      FROM (SELECT conversation_id, count(*) AS n
              FROM old_rows
             GROUP BY conversation_id) d
     WHERE c.id = d.conversation_id;
    RETURN NULL;
END
$$
"""

# Only rows whose (id, conversation_id, sent_at) changed matter: an UPDATE of
# received_at touches no conversation. A changed row's old version counts -1
# where it was, its new version +1 where it is.
_MOVED = """(
        SELECT conversation_id, 1 AS delta
          FROM (SELECT id, conversation_id, sent_at FROM new_rows
                EXCEPT ALL
                SELECT id, conversation_id, sent_at FROM old_rows) added
        UNION ALL
        SELECT conversation_id, -1 AS delta
          FROM (SELECT id, conversation_id, sent_at FROM old_rows
                EXCEPT ALL
                SELECT id, conversation_id, sent_at FROM new_rows) removed
    )"""

CONVDB_MESSAGES_UPDATED_V1 = f"""
CREATE OR REPLACE FUNCTION convdb_messages_updated_v1() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    PERFORM 1 FROM conversations c
     WHERE c.id IN (SELECT moved.conversation_id FROM {_MOVED} moved)
     ORDER BY c.id
       FOR NO KEY UPDATE;
    UPDATE conversations c
       SET message_count = c.message_count + d.delta,
           last_message_at = (SELECT max(m.sent_at) FROM messages m
                               WHERE m.conversation_id = c.id)
      FROM (SELECT moved.conversation_id, sum(moved.delta) AS delta
              FROM {_MOVED} moved
             GROUP BY moved.conversation_id) d
     WHERE c.id = d.conversation_id;
    RETURN NULL;
END
$$
"""

CONVDB_PARTICIPANTS_CHANGED_V1 = """
CREATE OR REPLACE FUNCTION convdb_participants_changed_v1() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    -- One function for INSERT, DELETE and UPDATE: a transition table the
    -- event does not have is replaced by an empty set.
    IF TG_OP = 'INSERT' THEN
        PERFORM 1 FROM conversations c
         WHERE c.id IN (SELECT DISTINCT t.conversation_id FROM new_rows t)
         ORDER BY c.id FOR NO KEY UPDATE;
        UPDATE conversations c
           SET participant_count = c.participant_count + d.n
          FROM (SELECT conversation_id, count(*) AS n FROM new_rows
                 GROUP BY conversation_id) d
         WHERE c.id = d.conversation_id;
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM 1 FROM conversations c
         WHERE c.id IN (SELECT DISTINCT t.conversation_id FROM old_rows t)
         ORDER BY c.id FOR NO KEY UPDATE;
        UPDATE conversations c
           SET participant_count = c.participant_count - d.n
          FROM (SELECT conversation_id, count(*) AS n FROM old_rows
                 GROUP BY conversation_id) d
         WHERE c.id = d.conversation_id;
    ELSE
        PERFORM 1 FROM conversations c
         WHERE c.id IN (SELECT t.conversation_id FROM new_rows t
                        UNION SELECT t.conversation_id FROM old_rows t)
         ORDER BY c.id FOR NO KEY UPDATE;
        UPDATE conversations c
           SET participant_count = c.participant_count + d.delta
          FROM (SELECT conversation_id, sum(delta) AS delta
                  FROM (SELECT conversation_id, 1 AS delta FROM new_rows
                        UNION ALL
                        SELECT conversation_id, -1 FROM old_rows) x
                 GROUP BY conversation_id
                HAVING sum(delta) <> 0) d
         WHERE c.id = d.conversation_id;
    END IF;
    RETURN NULL;
END
$$
"""

CONVDB_COUNTERS_TRUNCATED_V1 = """
CREATE OR REPLACE FUNCTION convdb_counters_truncated_v1() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    IF TG_TABLE_NAME = 'messages' THEN
        UPDATE conversations SET message_count = 0, last_message_at = NULL
         WHERE message_count <> 0 OR last_message_at IS NOT NULL;
    ELSE
        UPDATE conversations SET participant_count = 0 WHERE participant_count <> 0;
    END IF;
    RETURN NULL;
END
$$
"""

FUNCTIONS = (
    CONVDB_MESSAGES_INSERTED_V1,
    CONVDB_MESSAGES_DELETED_V1,
    CONVDB_MESSAGES_UPDATED_V1,
    CONVDB_PARTICIPANTS_CHANGED_V1,
    CONVDB_COUNTERS_TRUNCATED_V1,
)

# Transition tables allow one event per trigger, and no column list.
TRIGGERS = """
CREATE TRIGGER messages_count_inserted
    AFTER INSERT ON messages REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION convdb_messages_inserted_v1();
CREATE TRIGGER messages_count_deleted
    AFTER DELETE ON messages REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION convdb_messages_deleted_v1();
CREATE TRIGGER messages_count_updated
    AFTER UPDATE ON messages REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION convdb_messages_updated_v1();
CREATE TRIGGER messages_count_truncated
    AFTER TRUNCATE ON messages
    FOR EACH STATEMENT EXECUTE FUNCTION convdb_counters_truncated_v1();
CREATE TRIGGER conversation_participants_count_inserted
    AFTER INSERT ON conversation_participants REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION convdb_participants_changed_v1();
CREATE TRIGGER conversation_participants_count_deleted
    AFTER DELETE ON conversation_participants REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION convdb_participants_changed_v1();
CREATE TRIGGER conversation_participants_count_updated
    AFTER UPDATE ON conversation_participants
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION convdb_participants_changed_v1();
CREATE TRIGGER conversation_participants_count_truncated
    AFTER TRUNCATE ON conversation_participants
    FOR EACH STATEMENT EXECUTE FUNCTION convdb_counters_truncated_v1()
"""

# Databases migrated before this one already hold messages. The backfill is
# not a change of the conversation: its updated_at stays.
BACKFILL = """
LOCK TABLE messages, conversation_participants IN SHARE MODE;
ALTER TABLE conversations DISABLE TRIGGER conversations_set_updated_at;
UPDATE conversations c
   SET message_count = m.n, last_message_at = m.last_sent_at
  FROM (SELECT conversation_id, count(*) AS n, max(sent_at) AS last_sent_at
          FROM messages GROUP BY conversation_id) m
 WHERE c.id = m.conversation_id;
UPDATE conversations c
   SET participant_count = p.n
  FROM (SELECT conversation_id, count(*) AS n
          FROM conversation_participants GROUP BY conversation_id) p
 WHERE c.id = p.conversation_id;
ALTER TABLE conversations ENABLE TRIGGER conversations_set_updated_at
"""

DROP = """
DROP TRIGGER messages_count_inserted ON messages;
DROP TRIGGER messages_count_deleted ON messages;
DROP TRIGGER messages_count_updated ON messages;
DROP TRIGGER messages_count_truncated ON messages;
DROP TRIGGER conversation_participants_count_inserted ON conversation_participants;
DROP TRIGGER conversation_participants_count_deleted ON conversation_participants;
DROP TRIGGER conversation_participants_count_updated ON conversation_participants;
DROP TRIGGER conversation_participants_count_truncated ON conversation_participants;
DROP FUNCTION convdb_messages_inserted_v1(), convdb_messages_deleted_v1(),
              convdb_messages_updated_v1(), convdb_participants_changed_v1(),
              convdb_counters_truncated_v1();
ALTER TABLE conversations
    DROP COLUMN last_message_at,
    DROP COLUMN message_count,
    DROP COLUMN participant_count
"""


def migrate(migrator, database, *, fake=False):
    run_sql(migrator, COLUMNS)
    for function in FUNCTIONS:
        run_sql(migrator, function)
    run_sql(migrator, TRIGGERS)
    run_sql(migrator, BACKFILL)


def rollback(migrator, database, *, fake=False):
    run_sql(migrator, DROP)
