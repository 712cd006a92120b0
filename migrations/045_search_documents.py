r"""Search: one document per message, kept by triggers for every writer.

``convdb search`` (``convdb.search``) matches a query against a message's
body, its conversation's topic, and the names and addresses of the
conversation's participants (the sender is one of them). This module keeps,
per message, that text as a ``tsvector`` in ``convdb_search_messages``
(with the customer and ``sent_at``, so one customer's matches are found and
ordered without touching other customers' rows); the topic and people part
of it is computed once per conversation into ``convdb_search_conversations``
and copied into each message's document.

Text goes through ``convdb_search_fold_v1`` (lowercase, accents and
compatibility forms folded: ``Zoë`` -> ``zoe``, ``Straße`` -> ``strasse``,
full-width letters to ASCII) and the text search configuration
``convdb_search_v1`` (a copy of ``simple``: no stemming, no stop words;
``convdb search-reindex`` points it at a language's stemmer). Folding is a
function of convdb's own rather than the ``unaccent`` extension: unaccent's
rules differ between PostgreSQL versions (1,650 on 15, 2,661 on 18), so a
database upgraded between them would fold its stored documents and new
queries differently.

Exact lexemes are added beside the parsed words: an email address whole, its
local part and its domain with every parent domain of two labels or more;
a phone number as ``#`` and its digits reversed, so that a query for the
last digits (``555-2671``) is a prefix search. Runs of 7 to 15 digits in a
body (with spaces, dashes, dots or parentheses between them) are indexed the
same way.

Triggers (the counters' statement-level triggers run first: their names sort
first, and they lock the conversations the statement touched):

- ``messages`` INSERT: documents for the new rows (and the conversation's
  part, when the conversation has none yet); UPDATE of the body, the
  conversation or ``sent_at``: that message's document again.
- a change to a conversation's participants, topic or customer, a contact's
  name, a contact's addresses, an address's value, or a body's text: the
  conversations concerned are recomputed, and their messages' documents
  rewritten when the result differs. These lock the conversations first,
  then read in a new snapshot, so a message that a concurrent transaction
  is adding is either seen or waited for.
- ``messages`` DELETE (erasure, retention, a conversation or a customer
  deleted: cascaded deletes fire it too) and TRUNCATE: their documents go in
  the same statement. A trigger rather than a foreign key: the key's check
  on every insert (a row lock on the new message) cost more than the rest
  of the insert.

The GIN and ordering indexes, and the documents of messages already stored,
come in 046, outside a transaction.
"""

from convdb.sqlutil import run_sql

BTREE_GIN = "CREATE EXTENSION IF NOT EXISTS btree_gin"

CONVDB_SEARCH_V1 = """
CREATE TEXT SEARCH CONFIGURATION convdb_search_v1 (COPY = pg_catalog.simple)
"""

# ASCII text is only lowercased (under "C": a Turkish database would turn I
# into dotless i). Other text: lowercased like Python (convdb_unicode_v1),
# letters without a decomposition replaced, then NFKD, combining marks of
# the Latin, Greek and Cyrillic blocks removed (not the kana voicing marks),
# and NFC again.
CONVDB_SEARCH_FOLD_V1 = r"""
CREATE OR REPLACE FUNCTION convdb_search_fold_v1(value text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN octet_length(value) = length(value) THEN lower(value COLLATE "C")
    ELSE normalize(
        regexp_replace(
            normalize(
                translate(
                    replace(replace(replace(replace(
                        lower(value COLLATE convdb_unicode_v1),
                        'ß', 'ss'), 'æ', 'ae'), 'œ', 'oe'), 'þ', 'th'),
                    'øđłħŧıð', 'odlhtid'),
                NFKD),
            '[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]', '', 'g'),
        NFC) COLLATE "C"
END
"""

# '#' and the digits reversed, for the phone numbers of a folded text: runs
# of 7 to 15 digits with at most 3 of ' .()-' between two digits.
CONVDB_SEARCH_PHONES_V1 = r"""
CREATE OR REPLACE FUNCTION convdb_search_phones_v1(folded text)
RETURNS tsvector
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN coalesce((
        SELECT array_to_tsvector(array_agg(DISTINCT '#' || reverse(d.digits)))
          FROM regexp_matches(folded, '[0-9](?:[ .()-]{0,3}[0-9]){6,}', 'g') AS m(run),
               LATERAL (SELECT regexp_replace(m.run[1], '[^0-9]', '', 'g') AS digits) d
         WHERE length(d.digits) <= 15), '')
"""

# A body's document: its first 100,000 characters (a tsvector holds at most
# 1 MB), folded and parsed, and the phone numbers in it. No subquery and not
# STRICT, so the planner inlines it (a call through the SQL function
# executor costs more than the parsing); the phone numbers are looked for
# only where a run of 7 digits is.
CONVDB_SEARCH_BODY_V1 = r"""
CREATE OR REPLACE FUNCTION convdb_search_body_v1(body text)
RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN coalesce(
    to_tsvector('convdb_search_v1', convdb_search_fold_v1(left(body, 100000)))
    || CASE WHEN body ~ '[0-9](?:[ .()-]{0,3}[0-9]){6}'
            THEN convdb_search_phones_v1(convdb_search_fold_v1(left(body, 100000)))
            ELSE ''::tsvector
       END,
    ''::tsvector)
"""

# The exact lexemes of an address: an email address whole, its local part,
# its domain and the domain's parents of two labels or more; a phone number
# as '#' and its digits reversed.
CONVDB_SEARCH_ADDRESS_V1 = """
CREATE OR REPLACE FUNCTION convdb_search_address_v1(email text, phone text)
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN email IS NOT NULL THEN (
        SELECT ARRAY[convdb_search_fold_v1(email),
                     convdb_search_fold_v1(substring(email FROM '^(.*)@'))]
               || ARRAY(SELECT array_to_string(d.labels[i:], '.')
                          FROM generate_subscripts(d.labels, 1) AS i
                         WHERE i < cardinality(d.labels))
          FROM (SELECT string_to_array(
                    convdb_search_fold_v1(substring(email FROM '@([^@]*)$')), '.') AS labels) d)
    WHEN phone IS NOT NULL THEN ARRAY['#' || reverse(regexp_replace(phone, '[^0-9]', '', 'g'))]
END
"""

# The conversation part of its messages' documents: topic (as a body is),
# participants' names and email local parts (parsed), and their addresses'
# exact lexemes. Set-based throughout (joins and GROUP BY, no correlated
# subquery), and arrays joined through unnest(), not '= ANY(ids)' (a filter
# tested row by row): a statement may bring 100,000 conversations.
CONVDB_SEARCH_CONVERSATION_DOCS_V1 = r"""
CREATE OR REPLACE FUNCTION convdb_search_conversation_docs_v1(ids bigint[])
RETURNS TABLE (conversation_id bigint, customer_id bigint, document tsvector)
LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    WITH wanted AS (
        SELECT DISTINCT u.id FROM unnest(ids) AS u(id)
    ), people AS (
        SELECT DISTINCT cp.conversation_id, cp.contact_id
          FROM wanted w JOIN conversation_participants cp ON cp.conversation_id = w.id
    ), addresses AS (
        SELECT p.conversation_id, ea.lowered AS email, pn.e164 AS phone
          FROM people p
          JOIN contact_addresses ca ON ca.contact_id = p.contact_id
          LEFT JOIN email_addresses ea ON ea.id = ca.email_address_id
          LEFT JOIN phone_numbers pn ON pn.id = ca.phone_number_id
    ), words AS (
        SELECT x.conversation_id, string_agg(x.words, ' ; ') AS words
          FROM (SELECT p.conversation_id, ct.display_name AS words
                  FROM people p JOIN contacts ct ON ct.id = p.contact_id
                 WHERE ct.display_name IS NOT NULL
                UNION ALL
                SELECT a.conversation_id,
                       translate(substring(a.email FROM '^(.*)@'), '._+-', '    ')
                  FROM addresses a
                 WHERE a.email IS NOT NULL) x
         GROUP BY x.conversation_id
    ), lexemes AS (
        SELECT a.conversation_id, array_agg(DISTINCT l.lexeme) AS lexemes
          FROM addresses a, unnest(convdb_search_address_v1(a.email, a.phone)) AS l(lexeme)
         WHERE l.lexeme <> ''
         GROUP BY a.conversation_id
    )
    SELECT c.id, c.customer_id,
           convdb_search_body_v1(c.topic)
           || coalesce(to_tsvector('convdb_search_v1', convdb_search_fold_v1(w.words)), '')
           || coalesce(array_to_tsvector(l.lexemes), '')
      FROM wanted u
      JOIN conversations c ON c.id = u.id
      LEFT JOIN words w ON w.conversation_id = c.id
      LEFT JOIN lexemes l ON l.conversation_id = c.id;
END
"""

CONVDB_SEARCH_TABLES = """
CREATE TABLE convdb_search_conversations (
    conversation_id bigint PRIMARY KEY REFERENCES conversations (id) ON DELETE CASCADE,
    customer_id bigint NOT NULL,
    document tsvector NOT NULL
);
CREATE TABLE convdb_search_messages (
    message_id bigint PRIMARY KEY,
    customer_id bigint NOT NULL,
    sent_at timestamptz NOT NULL,
    document tsvector NOT NULL
);
-- Planner statistics for 1,000 customers and for rarer words: with the
-- default (100), a word absent from the sample is guessed 10 times more
-- common than a rare word is, and a small customer 3 times bigger.
ALTER TABLE convdb_search_messages
    ALTER COLUMN customer_id SET STATISTICS 1000,
    ALTER COLUMN document SET STATISTICS 1000;
-- Derived: a rollback that drops them loses nothing (convdb.migrate.dataloss).
COMMENT ON TABLE convdb_search_messages IS
    'derived: search documents of messages, rebuilt by convdb_search_rebuild_v1';
COMMENT ON TABLE convdb_search_conversations IS
    'derived: the conversation part of search documents, rebuilt from the conversations'
"""

# Documents of the messages ``ids``: their body's, then their conversation's
# part (computed first for a conversation that has none). ``replace``: rewrite
# a stored document that differs; else leave stored ones alone.
CONVDB_SEARCH_INDEX_V1 = """
CREATE OR REPLACE FUNCTION convdb_search_index_v1(ids bigint[], replace boolean)
RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    INSERT INTO convdb_search_conversations (conversation_id, customer_id, document)
    SELECT * FROM convdb_search_conversation_docs_v1(ARRAY(
        SELECT DISTINCT m.conversation_id
          FROM unnest(ids) AS u(id) JOIN messages m ON m.id = u.id
         WHERE NOT EXISTS (SELECT 1 FROM convdb_search_conversations s
                            WHERE s.conversation_id = m.conversation_id)))
        ON CONFLICT (conversation_id) DO NOTHING;
    INSERT INTO convdb_search_messages AS s (message_id, customer_id, sent_at, document)
    SELECT m.id, c.customer_id, m.sent_at,
           convdb_search_body_v1(coalesce(eb.raw, xb.raw)) || c.document
      FROM unnest(ids) AS u(id)
      JOIN messages m ON m.id = u.id
      JOIN convdb_search_conversations c ON c.conversation_id = m.conversation_id
      LEFT JOIN email_bodies eb ON eb.id = m.email_body_id
      LEFT JOIN xms_bodies xb ON xb.id = m.xms_body_id
     ORDER BY m.id
        ON CONFLICT (message_id) DO UPDATE
       SET customer_id = EXCLUDED.customer_id, sent_at = EXCLUDED.sent_at,
           document = EXCLUDED.document
     WHERE replace
       AND (s.customer_id, s.sent_at, s.document)
           IS DISTINCT FROM (EXCLUDED.customer_id, EXCLUDED.sent_at, EXCLUDED.document);
END
$$
"""

# Recompute the conversations ``ids`` and rewrite their messages' documents
# where their part changed. The conversations are locked first (in id order,
# as the counters do), so a transaction adding messages to one finishes
# before the rewrite reads them.
CONVDB_SEARCH_REFRESH_V1 = """
CREATE OR REPLACE FUNCTION convdb_search_refresh_v1(ids bigint[])
RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    changed bigint[];
BEGIN
    IF ids IS NULL OR cardinality(ids) = 0 THEN
        RETURN;
    END IF;
    PERFORM 1 FROM unnest(ids) AS u(id) JOIN conversations c ON c.id = u.id
     WHERE c.xmin <> xid(pg_current_xact_id())
     ORDER BY c.id
       FOR NO KEY UPDATE OF c;
    WITH saved AS (
        INSERT INTO convdb_search_conversations AS s (conversation_id, customer_id, document)
        SELECT * FROM convdb_search_conversation_docs_v1(ids) ORDER BY 1
            ON CONFLICT (conversation_id) DO UPDATE
           SET customer_id = EXCLUDED.customer_id, document = EXCLUDED.document
         WHERE (s.customer_id, s.document)
               IS DISTINCT FROM (EXCLUDED.customer_id, EXCLUDED.document)
        RETURNING s.conversation_id
    )
    SELECT array_agg(conversation_id) INTO changed FROM saved;
    IF changed IS NOT NULL THEN
        PERFORM convdb_search_index_v1(ARRAY(
            SELECT m.id FROM unnest(changed) AS u(id)
              JOIN messages m ON m.conversation_id = u.id), true);
    END IF;
END
$$
"""

# Every document again, in batches of ``batch`` messages, each committed:
# 046 (``replace`` false: only the missing ones) and ``convdb search-reindex``.
# No SET clause: a procedure that has one cannot COMMIT (the caller's
# search_path finds the tables, as it found them for the migration).
CONVDB_SEARCH_REBUILD_V1 = """
CREATE OR REPLACE PROCEDURE convdb_search_rebuild_v1(batch integer, replace boolean)
LANGUAGE plpgsql
AS $$
DECLARE
    done bigint := 0;
    upto bigint;
BEGIN
    IF replace THEN
        PERFORM convdb_search_refresh_v1(ARRAY(
            SELECT conversation_id FROM convdb_search_conversations));
        COMMIT;
    END IF;
    LOOP
        SELECT max(b.id) INTO upto
          FROM (SELECT id FROM messages WHERE id > done ORDER BY id LIMIT batch) b;
        EXIT WHEN upto IS NULL;
        PERFORM convdb_search_index_v1(
            ARRAY(SELECT id FROM messages WHERE id > done AND id <= upto), replace);
        done := upto;
        COMMIT;
    END LOOP;
END
$$
"""

# One trigger function per kind of change; each finds the messages or the
# conversations concerned and hands them to the functions above.
CONVDB_SEARCH_MESSAGES_CHANGED_V1 = """
CREATE OR REPLACE FUNCTION convdb_search_messages_changed_v1()
RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM convdb_search_index_v1(ARRAY(SELECT id FROM new_rows), false);
    ELSIF TG_OP = 'DELETE' THEN
        DELETE FROM convdb_search_messages s USING old_rows o WHERE s.message_id = o.id;
    ELSIF TG_OP = 'TRUNCATE' THEN
        TRUNCATE convdb_search_messages;
    ELSE
        PERFORM convdb_search_index_v1(ARRAY[NEW.id], true);
    END IF;
    RETURN NULL;
END
$$
"""

CONVDB_SEARCH_PEOPLE_CHANGED_V1 = """
CREATE OR REPLACE FUNCTION convdb_search_people_changed_v1()
RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    contact_ids bigint[];
    ids bigint[];
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        ids := ARRAY(SELECT conversation_id FROM convdb_search_conversations);
    ELSIF TG_TABLE_NAME = 'conversation_participants' THEN
        IF TG_OP = 'INSERT' THEN
            ids := ARRAY(SELECT DISTINCT conversation_id FROM new_rows ORDER BY 1);
        ELSIF TG_OP = 'DELETE' THEN
            ids := ARRAY(SELECT DISTINCT conversation_id FROM old_rows ORDER BY 1);
        ELSE
            ids := ARRAY(SELECT conversation_id FROM new_rows
                         UNION SELECT conversation_id FROM old_rows ORDER BY 1);
        END IF;
    ELSIF TG_TABLE_NAME = 'conversations' THEN
        ids := ARRAY[NEW.id];
    ELSE
        IF TG_TABLE_NAME = 'contacts' THEN
            contact_ids := ARRAY(SELECT n.id FROM new_rows n JOIN old_rows o USING (id)
                                  WHERE n.display_name IS DISTINCT FROM o.display_name);
        ELSIF TG_TABLE_NAME = 'contact_addresses' THEN
            IF TG_OP = 'INSERT' THEN
                contact_ids := ARRAY(SELECT contact_id FROM new_rows);
            ELSIF TG_OP = 'DELETE' THEN
                contact_ids := ARRAY(SELECT contact_id FROM old_rows);
            ELSE
                contact_ids := ARRAY(SELECT contact_id FROM new_rows
                                     UNION ALL SELECT contact_id FROM old_rows);
            END IF;
        ELSIF TG_TABLE_NAME = 'email_addresses' THEN
            contact_ids := ARRAY(SELECT contact_id FROM contact_addresses
                                  WHERE email_address_id = NEW.id);
        ELSE
            contact_ids := ARRAY(SELECT contact_id FROM contact_addresses
                                  WHERE phone_number_id = NEW.id);
        END IF;
        IF cardinality(contact_ids) = 0 THEN
            RETURN NULL;
        END IF;
        ids := ARRAY(SELECT DISTINCT p.conversation_id
                       FROM unnest(contact_ids) AS u(id)
                       JOIN conversation_participants p ON p.contact_id = u.id ORDER BY 1);
    END IF;
    PERFORM convdb_search_refresh_v1(ids);
    RETURN NULL;
END
$$
"""

# A body's new text: its row is locked against the messages being added
# with it (their foreign key holds KEY SHARE until they commit), then every
# message with that body is rewritten.
CONVDB_SEARCH_BODY_CHANGED_V1 = """
CREATE OR REPLACE FUNCTION convdb_search_body_changed_v1()
RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    IF TG_TABLE_NAME = 'email_bodies' THEN
        PERFORM 1 FROM email_bodies WHERE id = NEW.id FOR UPDATE;
        PERFORM convdb_search_index_v1(
            ARRAY(SELECT id FROM messages WHERE email_body_id = NEW.id), true);
    ELSE
        PERFORM 1 FROM xms_bodies WHERE id = NEW.id FOR UPDATE;
        PERFORM convdb_search_index_v1(
            ARRAY(SELECT id FROM messages WHERE xms_body_id = NEW.id), true);
    END IF;
    RETURN NULL;
END
$$
"""

# Column lists name what a statement sets (raw), not only what a BEFORE
# trigger derives from it (lowered, e164): "UPDATE OF" ignores the latter.
TRIGGERS = """
CREATE TRIGGER messages_search_inserted
    AFTER INSERT ON messages REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION convdb_search_messages_changed_v1();
CREATE TRIGGER messages_search_deleted
    AFTER DELETE ON messages REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION convdb_search_messages_changed_v1();
CREATE TRIGGER messages_search_truncated
    AFTER TRUNCATE ON messages
    FOR EACH STATEMENT EXECUTE FUNCTION convdb_search_messages_changed_v1();
CREATE TRIGGER messages_search_updated
    AFTER UPDATE OF conversation_id, email_body_id, xms_body_id, sent_at ON messages
    FOR EACH ROW
    WHEN ((OLD.conversation_id, OLD.email_body_id, OLD.xms_body_id, OLD.sent_at)
          IS DISTINCT FROM (NEW.conversation_id, NEW.email_body_id, NEW.xms_body_id, NEW.sent_at))
    EXECUTE FUNCTION convdb_search_messages_changed_v1();
CREATE TRIGGER conversation_participants_search_inserted
    AFTER INSERT ON conversation_participants REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION convdb_search_people_changed_v1();
CREATE TRIGGER conversation_participants_search_deleted
    AFTER DELETE ON conversation_participants REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION convdb_search_people_changed_v1();
CREATE TRIGGER conversation_participants_search_updated
    AFTER UPDATE ON conversation_participants
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION convdb_search_people_changed_v1();
CREATE TRIGGER conversation_participants_search_truncated
    AFTER TRUNCATE ON conversation_participants
    FOR EACH STATEMENT EXECUTE FUNCTION convdb_search_people_changed_v1();
CREATE TRIGGER conversations_search_updated
    AFTER UPDATE OF topic, customer_id ON conversations
    FOR EACH ROW
    WHEN ((OLD.topic, OLD.customer_id) IS DISTINCT FROM (NEW.topic, NEW.customer_id))
    EXECUTE FUNCTION convdb_search_people_changed_v1();
CREATE TRIGGER contacts_search_updated
    AFTER UPDATE ON contacts REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION convdb_search_people_changed_v1();
CREATE TRIGGER contact_addresses_search_inserted
    AFTER INSERT ON contact_addresses REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION convdb_search_people_changed_v1();
CREATE TRIGGER contact_addresses_search_deleted
    AFTER DELETE ON contact_addresses REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION convdb_search_people_changed_v1();
CREATE TRIGGER contact_addresses_search_updated
    AFTER UPDATE ON contact_addresses REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION convdb_search_people_changed_v1();
CREATE TRIGGER contact_addresses_search_truncated
    AFTER TRUNCATE ON contact_addresses
    FOR EACH STATEMENT EXECUTE FUNCTION convdb_search_people_changed_v1();
CREATE TRIGGER email_addresses_search_updated
    AFTER UPDATE OF raw, lowered ON email_addresses
    FOR EACH ROW WHEN (OLD.lowered IS DISTINCT FROM NEW.lowered)
    EXECUTE FUNCTION convdb_search_people_changed_v1();
CREATE TRIGGER phone_numbers_search_updated
    AFTER UPDATE OF raw, e164 ON phone_numbers
    FOR EACH ROW WHEN (OLD.e164 IS DISTINCT FROM NEW.e164)
    EXECUTE FUNCTION convdb_search_people_changed_v1();
CREATE TRIGGER email_bodies_search_updated
    AFTER UPDATE OF raw ON email_bodies
    FOR EACH ROW WHEN (OLD.raw IS DISTINCT FROM NEW.raw)
    EXECUTE FUNCTION convdb_search_body_changed_v1();
CREATE TRIGGER xms_bodies_search_updated
    AFTER UPDATE OF raw ON xms_bodies
    FOR EACH ROW WHEN (OLD.raw IS DISTINCT FROM NEW.raw)
    EXECUTE FUNCTION convdb_search_body_changed_v1()
"""

DROP = """
DROP TRIGGER messages_search_inserted ON messages;
DROP TRIGGER messages_search_updated ON messages;
DROP TRIGGER messages_search_deleted ON messages;
DROP TRIGGER messages_search_truncated ON messages;
DROP TRIGGER conversation_participants_search_inserted ON conversation_participants;
DROP TRIGGER conversation_participants_search_deleted ON conversation_participants;
DROP TRIGGER conversation_participants_search_updated ON conversation_participants;
DROP TRIGGER conversation_participants_search_truncated ON conversation_participants;
DROP TRIGGER conversations_search_updated ON conversations;
DROP TRIGGER contacts_search_updated ON contacts;
DROP TRIGGER contact_addresses_search_inserted ON contact_addresses;
DROP TRIGGER contact_addresses_search_deleted ON contact_addresses;
DROP TRIGGER contact_addresses_search_updated ON contact_addresses;
DROP TRIGGER contact_addresses_search_truncated ON contact_addresses;
DROP TRIGGER email_addresses_search_updated ON email_addresses;
DROP TRIGGER phone_numbers_search_updated ON phone_numbers;
DROP TRIGGER email_bodies_search_updated ON email_bodies;
DROP TRIGGER xms_bodies_search_updated ON xms_bodies;
DROP PROCEDURE convdb_search_rebuild_v1(integer, boolean);
DROP FUNCTION convdb_search_body_changed_v1(), convdb_search_people_changed_v1(),
    convdb_search_messages_changed_v1(), convdb_search_refresh_v1(bigint[]),
    convdb_search_index_v1(bigint[], boolean);
DROP TABLE convdb_search_messages, convdb_search_conversations;
DROP FUNCTION convdb_search_conversation_docs_v1(bigint[]),
    convdb_search_address_v1(text, text), convdb_search_body_v1(text),
    convdb_search_phones_v1(text), convdb_search_fold_v1(text);
DROP TEXT SEARCH CONFIGURATION convdb_search_v1;
DROP EXTENSION IF EXISTS btree_gin
"""


def migrate(migrator, database, *, fake=False):
    for sql in (
        BTREE_GIN,
        CONVDB_SEARCH_V1,
        CONVDB_SEARCH_FOLD_V1,
        CONVDB_SEARCH_PHONES_V1,
        CONVDB_SEARCH_BODY_V1,
        CONVDB_SEARCH_ADDRESS_V1,
        CONVDB_SEARCH_CONVERSATION_DOCS_V1,
        CONVDB_SEARCH_TABLES,
        CONVDB_SEARCH_INDEX_V1,
        CONVDB_SEARCH_REFRESH_V1,
        CONVDB_SEARCH_REBUILD_V1,
        CONVDB_SEARCH_MESSAGES_CHANGED_V1,
        CONVDB_SEARCH_PEOPLE_CHANGED_V1,
        CONVDB_SEARCH_BODY_CHANGED_V1,
        TRIGGERS,
    ):
        run_sql(migrator, sql)


def rollback(migrator, database, *, fake=False):
    run_sql(migrator, DROP)
