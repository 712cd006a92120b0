"""Counter triggers that find the touched conversations through the primary key.

The statement-level counter triggers of migration 010 join ``conversations``
to their transition table. A transition table has no statistics, so the
planner hashes it and scans every conversation: 2-3 ms per statement at
5,000 conversations (``EXPLAIN ANALYZE`` through ``auto_explain``), growing
with the table, twice per ``INSERT`` (lock, then update). A worker inserting
a batch of messages and participants paid that four times per batch.

The ``_v2`` functions first collect the touched ids into an array and then
address ``conversations`` by ``id = ANY(ids)``: an index scan of as many rows
as the statement touched, whatever the size of the table. Same locking order
(ids sorted, ``FOR NO KEY UPDATE`` before any change), same counts. Only the
INSERT paths of ``messages`` and all of ``conversation_participants`` are
replaced; DELETE/UPDATE of messages keep 010's functions.

Rollback points the triggers back to the ``_v1`` functions of 010.
"""

from convdb.sqlutil import run_sql

CONVDB_MESSAGES_INSERTED_V2 = """
CREATE OR REPLACE FUNCTION convdb_messages_inserted_v2() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    ids bigint[] := ARRAY(SELECT DISTINCT conversation_id FROM new_rows ORDER BY 1);
BEGIN
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

CONVDB_PARTICIPANTS_CHANGED_V2 = """
CREATE OR REPLACE FUNCTION convdb_participants_changed_v2() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    ids bigint[];
BEGIN
    -- One function for INSERT, DELETE and UPDATE: a transition table the
    -- event does not have is not referenced.
    IF TG_OP = 'INSERT' THEN
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

# CREATE OR REPLACE TRIGGER needs PostgreSQL 14; drop and create works on all.
_POINT = """
DROP TRIGGER messages_count_inserted ON messages;
CREATE TRIGGER messages_count_inserted
    AFTER INSERT ON messages REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION convdb_messages_inserted_{v}();
DROP TRIGGER conversation_participants_count_inserted ON conversation_participants;
CREATE TRIGGER conversation_participants_count_inserted
    AFTER INSERT ON conversation_participants REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION convdb_participants_changed_{v}();
DROP TRIGGER conversation_participants_count_deleted ON conversation_participants;
CREATE TRIGGER conversation_participants_count_deleted
    AFTER DELETE ON conversation_participants REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION convdb_participants_changed_{v}();
DROP TRIGGER conversation_participants_count_updated ON conversation_participants;
CREATE TRIGGER conversation_participants_count_updated
    AFTER UPDATE ON conversation_participants
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION convdb_participants_changed_{v}()
"""

DROP_V2 = """
DROP FUNCTION convdb_messages_inserted_v2(), convdb_participants_changed_v2()
"""


def migrate(migrator, database, *, fake=False):
    run_sql(migrator, CONVDB_MESSAGES_INSERTED_V2)
    run_sql(migrator, CONVDB_PARTICIPANTS_CHANGED_V2)
    run_sql(migrator, _POINT.format(v="v2"))


def rollback(migrator, database, *, fake=False):
    run_sql(migrator, _POINT.format(v="v1"))
    run_sql(migrator, DROP_V2)
