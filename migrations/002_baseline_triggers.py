"""Baseline 2/4: triggers on single rows: ``updated_at``, and dedup normalization.

Part of the baseline that replaces the core's first history (see
001_baseline_tables).

``updated_at``: a BEFORE UPDATE trigger on ``customers``, ``providers``,
``contacts`` and ``conversations`` sets it to ``now()``, unless the UPDATE
changes nothing.

Dedup: plain SQL inserts get the same normalized value and key as Python.
For each dedup table a BEFORE INSERT OR UPDATE trigger

1. fills the normalized column from ``raw`` when the statement leaves it NULL,
   with the SQL twin of the function in :mod:`convdb.dedup`;
2. computes ``hash`` from the normalized column (``convdb_hash_v1``) and
   refuses a row that brings a different one (SQLSTATE ``CV002``);
3. on INSERT, refuses a row whose hash already belongs to a *different*
   normalized value (SQLSTATE ``CV001``): a 64-bit collision is reported,
   never merged. ``INSERT ... ON CONFLICT (hash) DO NOTHING`` of an equal value
   passes the check and is skipped as usual.

``convdb_normalize_phone_v1`` only accepts strict E.164 (``+15551234567``) and
raises ``CV003`` for anything else: SQL cannot reproduce libphonenumber, and a
value different from Python's would duplicate the row. Insert the ``e164``
computed by ``convdb.dedup.normalize_phone()`` instead.

Lowercasing needs the collation ``convdb_unicode_v1``: the builtin
``PG_UNICODE_FAST`` on PostgreSQL 18+ (no ICU needed: the embedded server has
none), the ICU root locale before that. Both map case like Python's
``str.lower()`` (full mapping, final sigma); ``lower()`` under ``C``/``C.UTF-8``
only maps ASCII.

SQL normalize functions use SQL-standard bodies (``RETURN``), bound to the
objects they name when created; the PL/pgSQL ones pin ``search_path`` so a
session with another search path can neither break nor redirect them.
"""

from __future__ import annotations

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

CONVDB_SET_UPDATED_AT_V1 = """
CREATE OR REPLACE FUNCTION convdb_set_updated_at_v1() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- An UPDATE that changes nothing keeps its timestamp.
    IF ROW(NEW.*) IS DISTINCT FROM ROW(OLD.*) THEN
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END
$$
"""

UPDATED_AT_TABLES = ("customers", "providers", "contacts", "conversations")

SET_UPDATED_AT = """
CREATE TRIGGER {table}_set_updated_at
    BEFORE UPDATE ON {table}
    FOR EACH ROW EXECUTE FUNCTION convdb_set_updated_at_v1()
"""

CONVDB_UNICODE_V1 = """
DO $$
BEGIN
    IF current_setting('server_version_num')::int >= 180000 THEN
        CREATE COLLATION IF NOT EXISTS convdb_unicode_v1
            (provider = builtin, locale = 'PG_UNICODE_FAST');
    ELSE
        CREATE COLLATION IF NOT EXISTS convdb_unicode_v1
            (provider = icu, locale = 'und');
    END IF;
EXCEPTION WHEN feature_not_supported THEN
    RAISE EXCEPTION USING
        ERRCODE = 'feature_not_supported',
        MESSAGE = 'convdb needs PostgreSQL 18+ or a PostgreSQL built with ICU '
                  'to lowercase email addresses like Python (collation convdb_unicode_v1)';
END
$$
"""

CONVDB_HASH_V1 = """
CREATE OR REPLACE FUNCTION convdb_hash_v1(normalized text)
RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN ('x' || left(md5(normalized), 16))::bit(64)::bigint
"""

# The bracket class is exactly Python's str.isspace(); `\s` misses U+0085,
# U+00A0 and U+202F. Backslashes are literal here (standard_conforming_strings).
CONVDB_STRIP_V1 = r"""
CREATE OR REPLACE FUNCTION convdb_strip_v1(value text)
RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN regexp_replace(
    value,
    '^[\u0009-\u000d\u001c-\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+'
    '|[\u0009-\u000d\u001c-\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$',
    '',
    'g'
)
"""

CONVDB_NORMALIZE_BODY_V1 = r"""
CREATE OR REPLACE FUNCTION convdb_normalize_body_v1(raw text)
RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN btrim(
    regexp_replace(
        normalize(raw, NFC),
        '[\u0009-\u000d\u001c-\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+',
        ' ',
        'g'
    ),
    ' '
)
"""

CONVDB_NORMALIZE_URL_V1 = """
CREATE OR REPLACE FUNCTION convdb_normalize_url_v1(raw text)
RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN convdb_strip_v1(raw)
"""

# No IDNA encoding of the domain: PostgreSQL cannot do it, and both sides must agree.
CONVDB_NORMALIZE_EMAIL_V1 = """
CREATE OR REPLACE FUNCTION convdb_normalize_email_v1(raw text)
RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN normalize(lower(convdb_strip_v1(normalize(raw, NFC)) COLLATE convdb_unicode_v1), NFC)
"""

CONVDB_NORMALIZE_PHONE_V1 = """
CREATE OR REPLACE FUNCTION convdb_normalize_phone_v1(raw text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
SET search_path FROM CURRENT
AS $$
DECLARE
    candidate text := convdb_strip_v1(normalize(raw, NFKC));
BEGIN
    IF candidate ~ '^[+][1-9][0-9]{1,14}$' THEN
        RETURN candidate;
    END IF;
    RAISE EXCEPTION USING
        ERRCODE = 'CV003',
        MESSAGE = format('phone_numbers: cannot normalize %L in SQL', raw),
        HINT = 'Insert the e164 computed by convdb.dedup.normalize_phone(), '
               'or write the number in E.164 (+15551234567).';
END;
$$
"""

CONVDB_DEDUP_KEY_V1 = """
CREATE OR REPLACE FUNCTION convdb_dedup_key_v1(table_name text, given bigint, normalized text)
RETURNS bigint
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path FROM CURRENT
AS $$
DECLARE
    computed bigint := convdb_hash_v1(normalized);
BEGIN
    IF given <> computed THEN
        RAISE EXCEPTION USING
            ERRCODE = 'CV002',
            MESSAGE = format('%s: hash %s does not match the normalized value %L (its hash is %s)',
                             table_name, given, left(normalized, 80), computed),
            HINT = 'Leave hash NULL (and the normalized column too) to have them computed.';
    END IF;
    RETURN computed;
END;
$$
"""

CONVDB_DEDUP_REFUSE_COLLISION_V1 = """
CREATE OR REPLACE FUNCTION convdb_dedup_refuse_collision_v1(
    table_name text, hash bigint, incoming text, existing text
)
RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    IF existing <> incoming THEN
        RAISE EXCEPTION USING
            ERRCODE = 'CV001',
            MESSAGE = format('%s: 64-bit hash collision on %s between existing %L and new %L',
                             table_name, hash, left(existing, 80), left(incoming, 80)),
            HINT = 'Two different values must never share a row; report this value.';
    END IF;
END;
$$
"""

# One trigger function per table: static SQL keeps the collision lookup's plan
# cached (a generic function would need EXECUTE and replan on every row).
CONVDB_DEDUP_EMAIL_BODIES_V1 = """
CREATE OR REPLACE FUNCTION convdb_dedup_email_bodies_v1()
RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    NEW.normalized := coalesce(NEW.normalized, convdb_normalize_body_v1(NEW.raw));
    NEW.hash := convdb_dedup_key_v1(TG_TABLE_NAME, NEW.hash, NEW.normalized);
    IF TG_OP = 'INSERT' THEN
        PERFORM convdb_dedup_refuse_collision_v1(TG_TABLE_NAME, NEW.hash, NEW.normalized,
            (SELECT normalized FROM email_bodies WHERE hash = NEW.hash));
    END IF;
    RETURN NEW;
END;
$$
"""

CONVDB_DEDUP_XMS_BODIES_V1 = """
CREATE OR REPLACE FUNCTION convdb_dedup_xms_bodies_v1()
RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    NEW.normalized := coalesce(NEW.normalized, convdb_normalize_body_v1(NEW.raw));
    NEW.hash := convdb_dedup_key_v1(TG_TABLE_NAME, NEW.hash, NEW.normalized);
    IF TG_OP = 'INSERT' THEN
        PERFORM convdb_dedup_refuse_collision_v1(TG_TABLE_NAME, NEW.hash, NEW.normalized,
            (SELECT normalized FROM xms_bodies WHERE hash = NEW.hash));
    END IF;
    RETURN NEW;
END;
$$
"""

CONVDB_DEDUP_PHONE_NUMBERS_V1 = """
CREATE OR REPLACE FUNCTION convdb_dedup_phone_numbers_v1()
RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    NEW.e164 := coalesce(NEW.e164, convdb_normalize_phone_v1(NEW.raw));
    NEW.hash := convdb_dedup_key_v1(TG_TABLE_NAME, NEW.hash, NEW.e164);
    IF TG_OP = 'INSERT' THEN
        PERFORM convdb_dedup_refuse_collision_v1(TG_TABLE_NAME, NEW.hash, NEW.e164,
            (SELECT e164 FROM phone_numbers WHERE hash = NEW.hash));
    END IF;
    RETURN NEW;
END;
$$
"""

CONVDB_DEDUP_EMAIL_ADDRESSES_V1 = """
CREATE OR REPLACE FUNCTION convdb_dedup_email_addresses_v1()
RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    NEW.lowered := coalesce(NEW.lowered, convdb_normalize_email_v1(NEW.raw));
    NEW.hash := convdb_dedup_key_v1(TG_TABLE_NAME, NEW.hash, NEW.lowered);
    IF TG_OP = 'INSERT' THEN
        PERFORM convdb_dedup_refuse_collision_v1(TG_TABLE_NAME, NEW.hash, NEW.lowered,
            (SELECT lowered FROM email_addresses WHERE hash = NEW.hash));
    END IF;
    RETURN NEW;
END;
$$
"""

CONVDB_DEDUP_ATTACHMENT_URLS_V1 = """
CREATE OR REPLACE FUNCTION convdb_dedup_attachment_urls_v1()
RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    NEW.normalized := coalesce(NEW.normalized, convdb_normalize_url_v1(NEW.raw));
    NEW.hash := convdb_dedup_key_v1(TG_TABLE_NAME, NEW.hash, NEW.normalized);
    IF TG_OP = 'INSERT' THEN
        PERFORM convdb_dedup_refuse_collision_v1(TG_TABLE_NAME, NEW.hash, NEW.normalized,
            (SELECT normalized FROM attachment_urls WHERE hash = NEW.hash));
    END IF;
    RETURN NEW;
END;
$$
"""

EMAIL_BODIES_DEDUP_V1 = """
CREATE OR REPLACE TRIGGER email_bodies_dedup_v1
    BEFORE INSERT OR UPDATE ON email_bodies
    FOR EACH ROW EXECUTE FUNCTION convdb_dedup_email_bodies_v1()
"""

XMS_BODIES_DEDUP_V1 = """
CREATE OR REPLACE TRIGGER xms_bodies_dedup_v1
    BEFORE INSERT OR UPDATE ON xms_bodies
    FOR EACH ROW EXECUTE FUNCTION convdb_dedup_xms_bodies_v1()
"""

PHONE_NUMBERS_DEDUP_V1 = """
CREATE OR REPLACE TRIGGER phone_numbers_dedup_v1
    BEFORE INSERT OR UPDATE ON phone_numbers
    FOR EACH ROW EXECUTE FUNCTION convdb_dedup_phone_numbers_v1()
"""

EMAIL_ADDRESSES_DEDUP_V1 = """
CREATE OR REPLACE TRIGGER email_addresses_dedup_v1
    BEFORE INSERT OR UPDATE ON email_addresses
    FOR EACH ROW EXECUTE FUNCTION convdb_dedup_email_addresses_v1()
"""

ATTACHMENT_URLS_DEDUP_V1 = """
CREATE OR REPLACE TRIGGER attachment_urls_dedup_v1
    BEFORE INSERT OR UPDATE ON attachment_urls
    FOR EACH ROW EXECUTE FUNCTION convdb_dedup_attachment_urls_v1()
"""

# Dedup objects: (definition, what DROP names) in creation order; rollback drops in reverse.
OBJECTS = [
    (CONVDB_UNICODE_V1, "COLLATION IF EXISTS convdb_unicode_v1"),
    (CONVDB_HASH_V1, "FUNCTION IF EXISTS convdb_hash_v1(text)"),
    (CONVDB_STRIP_V1, "FUNCTION IF EXISTS convdb_strip_v1(text)"),
    (CONVDB_NORMALIZE_BODY_V1, "FUNCTION IF EXISTS convdb_normalize_body_v1(text)"),
    (CONVDB_NORMALIZE_URL_V1, "FUNCTION IF EXISTS convdb_normalize_url_v1(text)"),
    (CONVDB_NORMALIZE_EMAIL_V1, "FUNCTION IF EXISTS convdb_normalize_email_v1(text)"),
    (CONVDB_NORMALIZE_PHONE_V1, "FUNCTION IF EXISTS convdb_normalize_phone_v1(text)"),
    (CONVDB_DEDUP_KEY_V1, "FUNCTION IF EXISTS convdb_dedup_key_v1(text, bigint, text)"),
    (
        CONVDB_DEDUP_REFUSE_COLLISION_V1,
        "FUNCTION IF EXISTS convdb_dedup_refuse_collision_v1(text, bigint, text, text)",
    ),
    (CONVDB_DEDUP_EMAIL_BODIES_V1, "FUNCTION IF EXISTS convdb_dedup_email_bodies_v1()"),
    (CONVDB_DEDUP_XMS_BODIES_V1, "FUNCTION IF EXISTS convdb_dedup_xms_bodies_v1()"),
    (CONVDB_DEDUP_PHONE_NUMBERS_V1, "FUNCTION IF EXISTS convdb_dedup_phone_numbers_v1()"),
    (CONVDB_DEDUP_EMAIL_ADDRESSES_V1, "FUNCTION IF EXISTS convdb_dedup_email_addresses_v1()"),
    (CONVDB_DEDUP_ATTACHMENT_URLS_V1, "FUNCTION IF EXISTS convdb_dedup_attachment_urls_v1()"),
    (EMAIL_BODIES_DEDUP_V1, "TRIGGER IF EXISTS email_bodies_dedup_v1 ON email_bodies"),
    (XMS_BODIES_DEDUP_V1, "TRIGGER IF EXISTS xms_bodies_dedup_v1 ON xms_bodies"),
    (PHONE_NUMBERS_DEDUP_V1, "TRIGGER IF EXISTS phone_numbers_dedup_v1 ON phone_numbers"),
    (EMAIL_ADDRESSES_DEDUP_V1, "TRIGGER IF EXISTS email_addresses_dedup_v1 ON email_addresses"),
    (ATTACHMENT_URLS_DEDUP_V1, "TRIGGER IF EXISTS attachment_urls_dedup_v1 ON attachment_urls"),
]


def migrate(migrator, database, *, fake=False):
    """The ``updated_at`` function and triggers; the collation, dedup functions and triggers."""
    run_sql(migrator, CONVDB_SET_UPDATED_AT_V1)
    for table in UPDATED_AT_TABLES:
        run_sql(migrator, SET_UPDATED_AT.format(table=table))
    for definition, _ in OBJECTS:
        run_sql(migrator, definition)


def rollback(migrator, database, *, fake=False):
    """Everything :func:`migrate` made, in reverse."""
    for _, dropped in reversed(OBJECTS):
        run_sql(migrator, f"DROP {dropped}")
    for table in UPDATED_AT_TABLES:
        run_sql(migrator, f"DROP TRIGGER {table}_set_updated_at ON {table}")
    run_sql(migrator, "DROP FUNCTION convdb_set_updated_at_v1()")
