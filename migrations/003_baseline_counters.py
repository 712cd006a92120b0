"""Baseline 3/4: conversation counters, kept by statement-level triggers.

Part of the baseline that replaces the core's first history (see
001_baseline_tables).

``conversations.last_message_at``, ``message_count`` and ``participant_count``
(001) are kept by the database, so rows written by plain SQL (an analyst's
loader, psql) count exactly like rows written by convdb, and an inbox reads
counters through an index instead of aggregating messages.

The triggers are statement-level with transition tables (one event per
trigger, no column list): a batch ``INSERT`` of 1,000 messages updates each
touched conversation once.

- ``messages``: INSERT adds to ``message_count`` and raises
  ``last_message_at`` (``convdb_messages_inserted_v3``); DELETE subtracts and
  recomputes ``last_message_at`` (``max(sent_at)`` through
  ``messages_conversation_sent_at_idx``); UPDATE handles rows that move to
  another conversation or change ``sent_at`` (``_v1``).
- ``conversation_participants``: INSERT, DELETE and UPDATE adjust
  ``participant_count`` (``convdb_participants_changed_v3``).
- TRUNCATE of either table resets its counters.

Batch writers count themselves: when the transaction has set
``convdb.counters_by_caller`` to ``on`` (``set_config(..., true)``), the
INSERT triggers do not count; the writer that set it adds the rows it
inserted to the counters itself, in one locking ``UPDATE`` per batch, and
resets the setting right after its inserts. Every other writer never sets it
and counts through the triggers; DELETE and UPDATE always count through them.

Locking: each trigger first locks the touched conversations in id order
(``FOR NO KEY UPDATE``, which does not conflict with the ``FOR KEY SHARE``
that foreign-key checks take), so concurrent writers into overlapping
conversations queue instead of deadlocking; the ``_v3`` functions find them
by ``id = ANY(ids)`` (an index scan of as many rows as the statement
touched: a transition table has no statistics, and a join to it would scan
every conversation). The recomputing statements run after that lock, in a
fresh snapshot (READ COMMITTED), and so see every committed message.

Counters changing also bump ``conversations.updated_at`` (002's trigger).
"""

from convdb.sqlutil import run_sql

# The first history; written out in each baseline module because convdb
# reads REPLACES from the module's text and never imports it.
REPLACES = [
    "001_core_tables",
    "002_dedup_tables",
    "003_indexes",
    "004_updated_at_triggers",
    "005_dedup_triggers",
    "006_views",
    "007_queue_inbound_events",
    "008_ingestion_keys",
    "010_conversation_counters",
    "011_inbox_index_and_overview",
    "012_autovacuum_hot_tables",
    "013_conversation_messages_subqueries",
    "014_inbox_covering_index",
    "015_counter_triggers_by_id",
    "016_counters_by_caller",
]

CONVDB_MESSAGES_INSERTED_V3 = """
CREATE OR REPLACE FUNCTION convdb_messages_inserted_v3() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    ids bigint[];
BEGIN
    IF current_setting('convdb.counters_by_caller', true) = 'on' THEN
        RETURN NULL;
    END IF;
    ids := ARRAY(SELECT DISTINCT conversation_id FROM new_rows ORDER BY 1);
    PERFORM 1 FROM conversations c WHERE c.id = ANY(ids) ORDER BY c.id FOR NO KEY UPDATE;
    UPDATE conversations c
       SET message_count = c.message_count + d.n,
           last_message_at = GREATEST(c.last_message_at, d.last_sent_at)
      FROM (SELECT conversation_id, count(*) AS n, max(sent_at) AS last_sent_at
              FROM new_rows
             GROUP BY conversation_id) d
     WHERE c.id = ANY(ids) AND c.id = d.conversation_id;
    RETURN NULL;
END
$$
"""

CONVDB_MESSAGES_DELETED_V1 = """
CREATE OR REPLACE FUNCTION convdb_messages_deleted_v1() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN

    PERFORM 1 FROM conversations c
     WHERE c.id IN (SELECT DISTINCT t.conversation_id FROM old_rows t)
     ORDER BY c.id
       FOR NO KEY UPDATE;

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

CONVDB_MESSAGES_UPDATED_V1 = """
CREATE OR REPLACE FUNCTION convdb_messages_updated_v1() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    PERFORM 1 FROM conversations c
     WHERE c.id IN (SELECT moved.conversation_id FROM (
        SELECT conversation_id, 1 AS delta
          FROM (SELECT id, conversation_id, sent_at FROM new_rows
                EXCEPT ALL
                SELECT id, conversation_id, sent_at FROM old_rows) added
        UNION ALL
        SELECT conversation_id, -1 AS delta
          FROM (SELECT id, conversation_id, sent_at FROM old_rows
                EXCEPT ALL
                SELECT id, conversation_id, sent_at FROM new_rows) removed
    ) moved)
     ORDER BY c.id
       FOR NO KEY UPDATE;
    UPDATE conversations c
       SET message_count = c.message_count + d.delta,
           last_message_at = (SELECT max(m.sent_at) FROM messages m
                               WHERE m.conversation_id = c.id)
      FROM (SELECT moved.conversation_id, sum(moved.delta) AS delta
              FROM (
        SELECT conversation_id, 1 AS delta
          FROM (SELECT id, conversation_id, sent_at FROM new_rows
                EXCEPT ALL
                SELECT id, conversation_id, sent_at FROM old_rows) added
        UNION ALL
        SELECT conversation_id, -1 AS delta
          FROM (SELECT id, conversation_id, sent_at FROM old_rows
                EXCEPT ALL
                SELECT id, conversation_id, sent_at FROM new_rows) removed
    ) moved
             GROUP BY moved.conversation_id) d
     WHERE c.id = d.conversation_id;
    RETURN NULL;
END
$$
"""

CONVDB_PARTICIPANTS_CHANGED_V3 = """
CREATE OR REPLACE FUNCTION convdb_participants_changed_v3() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    ids bigint[];
BEGIN
    -- One function for INSERT, DELETE and UPDATE: a transition table the
    -- event does not have is not referenced.
    IF TG_OP = 'INSERT' THEN
        IF current_setting('convdb.counters_by_caller', true) = 'on' THEN
            RETURN NULL;
        END IF;
        ids := ARRAY(SELECT DISTINCT conversation_id FROM new_rows ORDER BY 1);
        PERFORM 1 FROM conversations c WHERE c.id = ANY(ids) ORDER BY c.id FOR NO KEY UPDATE;
        UPDATE conversations c
           SET participant_count = c.participant_count + d.n
          FROM (SELECT conversation_id, count(*) AS n FROM new_rows
                 GROUP BY conversation_id) d
         WHERE c.id = ANY(ids) AND c.id = d.conversation_id;
    ELSIF TG_OP = 'DELETE' THEN
        ids := ARRAY(SELECT DISTINCT conversation_id FROM old_rows ORDER BY 1);
        PERFORM 1 FROM conversations c WHERE c.id = ANY(ids) ORDER BY c.id FOR NO KEY UPDATE;
        UPDATE conversations c
           SET participant_count = c.participant_count - d.n
          FROM (SELECT conversation_id, count(*) AS n FROM old_rows
                 GROUP BY conversation_id) d
         WHERE c.id = ANY(ids) AND c.id = d.conversation_id;
    ELSE
        ids := ARRAY(SELECT conversation_id FROM new_rows
                     UNION SELECT conversation_id FROM old_rows ORDER BY 1);
        PERFORM 1 FROM conversations c WHERE c.id = ANY(ids) ORDER BY c.id FOR NO KEY UPDATE;
        UPDATE conversations c
           SET participant_count = c.participant_count + d.delta
          FROM (SELECT conversation_id, sum(delta) AS delta
                  FROM (SELECT conversation_id, 1 AS delta FROM new_rows
                        UNION ALL
                        SELECT conversation_id, -1 FROM old_rows) x
                 GROUP BY conversation_id
                HAVING sum(delta) <> 0) d
         WHERE c.id = ANY(ids) AND c.id = d.conversation_id;
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
    CONVDB_MESSAGES_INSERTED_V3,
    CONVDB_MESSAGES_DELETED_V1,
    CONVDB_MESSAGES_UPDATED_V1,
    CONVDB_PARTICIPANTS_CHANGED_V3,
    CONVDB_COUNTERS_TRUNCATED_V1,
)

TRIGGERS = """
CREATE TRIGGER messages_count_inserted
    AFTER INSERT ON messages REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION convdb_messages_inserted_v3();
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
    FOR EACH STATEMENT EXECUTE FUNCTION convdb_participants_changed_v3();
CREATE TRIGGER conversation_participants_count_deleted
    AFTER DELETE ON conversation_participants REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION convdb_participants_changed_v3();
CREATE TRIGGER conversation_participants_count_updated
    AFTER UPDATE ON conversation_participants
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION convdb_participants_changed_v3();
CREATE TRIGGER conversation_participants_count_truncated
    AFTER TRUNCATE ON conversation_participants
    FOR EACH STATEMENT EXECUTE FUNCTION convdb_counters_truncated_v1()
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
DROP FUNCTION convdb_messages_inserted_v3(), convdb_messages_deleted_v1(),
              convdb_messages_updated_v1(), convdb_participants_changed_v3(),
              convdb_counters_truncated_v1()
"""


def migrate(migrator, database, *, fake=False):
    for function in FUNCTIONS:
        run_sql(migrator, function)
    run_sql(migrator, TRIGGERS)


def rollback(migrator, database, *, fake=False):
    run_sql(migrator, DROP)
