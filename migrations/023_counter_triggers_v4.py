"""Conversation counters kept by the triggers alone; ``participant_count`` counts contacts.

After this migration the statement-level triggers are the one mechanism that
keeps ``conversations.message_count``, ``last_message_at`` and
``participant_count``, for every writer: plain SQL, the models and the
ingestion code alike (it no longer counts anything itself).

- ``convdb_messages_inserted_v4``: 016's ``_v3`` without the
  ``convdb.counters_by_caller`` guard, reading the transition table once
  (count and latest ``sent_at`` per conversation, gathered into arrays) and
  returning at once when the statement inserted nothing. It also counts the
  participants of a conversation that has none counted yet: a writer that
  inserts a new conversation's participants and first messages in one
  statement (``convdb.ingest`` does) then has the conversation written once,
  by this trigger, which runs first; the participants' trigger finds its
  count right and writes nothing. Whatever the order, the participants'
  trigger has the last word on ``participant_count``.
- ``convdb_participants_changed_v4``: ``participant_count`` is the number of
  distinct contacts among a conversation's participants
  (``count(distinct contact_id)``, as the data model specifies): one contact
  listed both as ``customer`` and as ``contact`` counts once. After any INSERT, DELETE or UPDATE it
  recounts the touched conversations through the primary key
  ``(conversation_id, contact_id, role)``, and writes only the counts that
  changed. A recount, unlike adding and subtracting rows, stays right when
  two transactions add the same contact under two roles at once: the second
  one counts after the first commits (it waits for the conversation's lock,
  then its next statement sees the first one's rows).

Both lock the touched conversations in id order (``FOR NO KEY UPDATE``)
before changing any, as 010-016 do, but for the rows whose current version
this transaction wrote (``xmin``: a conversation it created or already
counted into): nobody else can change those before it commits, and locking
them again would only cost a WAL record each. DELETE and UPDATE of
``messages`` keep 010's functions; TRUNCATE keeps 010's.

016's ``_v3`` functions (the baseline's) stay defined, unused, so that code
written for 016, which looks for ``_v3`` by name before counting in Python,
finds it gone from the triggers and leaves the counting to them; rollback
points the triggers back at them.

Existing rows: ``participant_count`` is recomputed as distinct contacts
(``updated_at`` untouched: a correction, not a change). Rollback also
restores the row counts.
"""

from convdb.sqlutil import run_sql

# Shared by both functions: lock the conversations ``ids`` in id order, but
# for those whose current version this transaction wrote.
_LOCK = """\
    PERFORM 1 FROM conversations c
     WHERE c.id = ANY(ids) AND c.xmin <> xid(pg_current_xact_id())
     ORDER BY c.id
       FOR NO KEY UPDATE;"""

CONVDB_MESSAGES_INSERTED_V4 = f"""
CREATE OR REPLACE FUNCTION convdb_messages_inserted_v4() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    ids bigint[];
    added bigint[];
    latest timestamptz[];
BEGIN
    SELECT array_agg(d.conversation_id ORDER BY d.conversation_id),
           array_agg(d.n ORDER BY d.conversation_id),
           array_agg(d.last_sent_at ORDER BY d.conversation_id)
      INTO ids, added, latest
      FROM (SELECT conversation_id, count(*) AS n, max(sent_at) AS last_sent_at
              FROM new_rows
             GROUP BY conversation_id) d;
    IF ids IS NULL THEN
        RETURN NULL;
    END IF;
{_LOCK}
    UPDATE conversations c
       SET message_count = c.message_count + d.n,
           last_message_at = GREATEST(c.last_message_at, d.last_sent_at),
           participant_count = CASE c.participant_count
               WHEN 0 THEN (SELECT count(DISTINCT p.contact_id)
                              FROM conversation_participants p
                             WHERE p.conversation_id = c.id)
               ELSE c.participant_count
           END
      FROM unnest(ids, added, latest) AS d(id, n, last_sent_at)
     WHERE c.id = ANY(ids) AND c.id = d.id;
    RETURN NULL;
END
$$
"""

CONVDB_PARTICIPANTS_CHANGED_V4 = f"""
CREATE OR REPLACE FUNCTION convdb_participants_changed_v4() RETURNS trigger
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
    ELSIF TG_OP = 'DELETE' THEN
        ids := ARRAY(SELECT DISTINCT conversation_id FROM old_rows ORDER BY 1);
    ELSE
        ids := ARRAY(SELECT conversation_id FROM new_rows
                     UNION SELECT conversation_id FROM old_rows ORDER BY 1);
    END IF;
    IF cardinality(ids) = 0 THEN
        RETURN NULL;
    END IF;
{_LOCK}
    UPDATE conversations c
       SET participant_count = d.n
      FROM (SELECT u.id, count(DISTINCT p.contact_id) AS n
              FROM unnest(ids) AS u(id)
              LEFT JOIN conversation_participants p ON p.conversation_id = u.id
             GROUP BY u.id) d
     WHERE c.id = ANY(ids) AND c.id = d.id AND c.participant_count <> d.n;
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

# Under a SHARE lock, so no participant changes while counting; only the
# counts that differ are written, and updated_at stays.
_RECOUNT = """
LOCK TABLE conversation_participants IN SHARE MODE;
ALTER TABLE conversations DISABLE TRIGGER conversations_set_updated_at;
UPDATE conversations c
   SET participant_count = p.n
  FROM (SELECT conversation_id, count({what}) AS n
          FROM conversation_participants GROUP BY conversation_id) p
 WHERE c.id = p.conversation_id AND c.participant_count <> p.n;
ALTER TABLE conversations ENABLE TRIGGER conversations_set_updated_at
"""

DROP_V4 = """
DROP FUNCTION convdb_messages_inserted_v4(), convdb_participants_changed_v4()
"""


def migrate(migrator, database, *, fake=False):
    run_sql(migrator, CONVDB_MESSAGES_INSERTED_V4)
    run_sql(migrator, CONVDB_PARTICIPANTS_CHANGED_V4)
    run_sql(migrator, _POINT.format(v="v4"))
    run_sql(migrator, _RECOUNT.format(what="DISTINCT contact_id"))


def rollback(migrator, database, *, fake=False):
    run_sql(migrator, _POINT.format(v="v3"))
    run_sql(migrator, _RECOUNT.format(what="*"))
    run_sql(migrator, DROP_V4)
