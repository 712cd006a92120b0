"""Triggers that keep ``updated_at`` current, and UTC as the database's time zone.

convdb's own connections always work in UTC; the database default makes psql
and other clients read and write timestamps in UTC too.
"""

from convdb.sqlutil import run_sql

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

TABLES = ("customers", "providers", "contacts", "conversations")

TRIGGER = """
CREATE TRIGGER {table}_set_updated_at
    BEFORE UPDATE ON {table}
    FOR EACH ROW EXECUTE FUNCTION convdb_set_updated_at_v1()
"""

DATABASE_UTC = """
DO $$
BEGIN
    EXECUTE format('ALTER DATABASE %I SET timezone TO %L', current_database(), 'UTC');
END
$$
"""

DATABASE_RESET_TIMEZONE = """
DO $$
BEGIN
    EXECUTE format('ALTER DATABASE %I RESET timezone', current_database());
END
$$
"""


def migrate(migrator, database, *, fake=False):
    run_sql(migrator, CONVDB_SET_UPDATED_AT_V1)
    for table in TABLES:
        run_sql(migrator, TRIGGER.format(table=table))
    run_sql(migrator, DATABASE_UTC)


def rollback(migrator, database, *, fake=False):
    run_sql(migrator, DATABASE_RESET_TIMEZONE)
    for table in TABLES:
        run_sql(migrator, f"DROP TRIGGER {table}_set_updated_at ON {table}")
    run_sql(migrator, "DROP FUNCTION convdb_set_updated_at_v1()")
