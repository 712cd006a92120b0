"""What the provider adapters need: attachment sizes, and numbers found across customers.

``attachments.size``: the byte size of an attachment whose bytes convdb
stored itself (an email's files, kept in the attachment store), NULL when it
is unknown (a URL at the provider, such as Twilio's media). The canonical
payload's attachment entries carry it as ``size``.

``endpoint_mappings_hash_idx``: the Twilio adapter finds the customer of an
incoming message by its ``To`` number among every customer's mappings, a
lookup by normalized number without a customer (the unique index leads with
the customer, so it cannot serve it).
"""

from convdb.sqlutil import run_sql

ATTACHMENTS_SIZE = """
ALTER TABLE attachments ADD COLUMN size BIGINT CHECK (size >= 0)
"""

ENDPOINT_MAPPINGS_HASH_INDEX = """
CREATE INDEX endpoint_mappings_hash_idx ON endpoint_mappings (hash)
"""


def migrate(migrator, database, *, fake=False):
    run_sql(migrator, ATTACHMENTS_SIZE)
    run_sql(migrator, ENDPOINT_MAPPINGS_HASH_INDEX)


def rollback(migrator, database, *, fake=False):
    run_sql(migrator, "DROP INDEX endpoint_mappings_hash_idx")
    run_sql(migrator, "ALTER TABLE attachments DROP COLUMN size")
