"""``attachments.filename``: the name a file was sent under, for people to read.

The canonical event's attachments may carry ``filename`` (the attachment
store's adapters set it); ingestion keeps it here, so the operator console
shows a file by name, type and size. NULL when the sender gave none. Shown
as text, never used as a path.
"""

from convdb.migrate.sql import run_sql

ADD_FILENAME = """
ALTER TABLE attachments
    ADD COLUMN filename TEXT CHECK (length(filename) BETWEEN 1 AND 255)
"""


def migrate(migrator, database, *, fake=False):
    run_sql(migrator, ADD_FILENAME)


def rollback(migrator, database, *, fake=False):
    run_sql(migrator, "ALTER TABLE attachments DROP COLUMN filename")
