"""Counter triggers that let a batch writer keep the counters itself.

A worker batch inserts its participants and its messages in two statements;
the statement-level triggers of 015 then lock and update every touched
conversation twice (once per statement), and for a conversation created in
the same batch the first of those updates is not a HOT update (it changes
``last_message_at``, which the inbox index holds). ``perf`` of a worker
draining 20,000 canonical events put the two triggers at about a fifth of
its backend's time.

The ``_v3`` functions are 015's ``_v2`` with one guard: when the transaction
has set ``convdb.counters_by_caller`` to ``on`` (``set_config(...,
true)``, transaction-local), an INSERT does not count; the writer that set it
adds the rows it inserted to the counters itself, in one locking ``UPDATE``
per batch (:func:`convdb.ingest_batch.ingest_messages` does, and resets the
setting right after its inserts). Every other writer (plain SQL, the models,
the per-event ingestion) never sets it and counts through the triggers as
before; DELETE and UPDATE always count through the triggers.

Rollback points the triggers back to the ``_v2`` functions of 015.
"""

from convdb.sqlutil import run_sql

# The guard: a missing setting reads as NULL (current_setting(..., true)).
_CALLER_COUNTS = "current_setting('convdb.counters_by_caller', true) = 'on'"

CONVDB_MESSAGES_INSERTED_V3 = f"""
CREATE OR REPLACE FUNCTION convdb_messages_inserted_v3() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    ids bigint[];
BEGIN
    IF {_CALLER_COUNTS} THEN
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

CONVDB_PARTICIPANTS_CHANGED_V3 = f"""
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
        IF {_CALLER_COUNTS} THEN
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

DROP_V3 = """
DROP FUNCTION convdb_messages_inserted_v3(), convdb_participants_changed_v3()
"""


def migrate(migrator, database, *, fake=False):
    run_sql(migrator, CONVDB_MESSAGES_INSERTED_V3)
    run_sql(migrator, CONVDB_PARTICIPANTS_CHANGED_V3)
    run_sql(migrator, _POINT.format(v="v3"))


def rollback(migrator, database, *, fake=False):
    run_sql(migrator, _POINT.format(v="v2"))
    run_sql(migrator, DROP_V3)
