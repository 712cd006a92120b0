"""Drop the counter functions the first history left behind, unused since.

Databases migrated with the first history (001_core_tables ...
016_counters_by_caller) kept every version of the insert counter functions
after the triggers moved on to the next: ``convdb_messages_inserted_v1`` and
``_v2``, ``convdb_participants_changed_v1`` and ``_v2``. No trigger runs them
(the triggers run the ``_v3`` functions). The baseline never creates them,
so on a database that ran it this is a no-op (``IF EXISTS``); afterwards
both kinds of database hold exactly the schema in ``schema.sql``.

Rollback does nothing: recreating unused functions would give a database
that ran the baseline objects it never had.
"""

from convdb.sqlutil import run_sql

DROP_SUPERSEDED = """
DROP FUNCTION IF EXISTS
    convdb_messages_inserted_v1(),
    convdb_messages_inserted_v2(),
    convdb_participants_changed_v1(),
    convdb_participants_changed_v2()
"""


def migrate(migrator, database, *, fake=False):
    run_sql(migrator, DROP_SUPERSEDED)


def rollback(migrator, database, *, fake=False):
    pass
