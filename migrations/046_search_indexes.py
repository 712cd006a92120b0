"""Search: documents for the messages already stored, then the search indexes, concurrently.

Runs outside a transaction (``TRANSACTIONAL = False``), so ingestion goes on
meanwhile: 045's triggers already keep the documents of every message written
since, and ``convdb_search_rebuild_v1`` writes the missing ones in committed
batches of 5,000 messages (a conversation touched meanwhile has its
documents rewritten by its trigger; a batch never overwrites a stored one).
Then the two indexes, each ``CREATE INDEX CONCURRENTLY``:

- ``convdb_search_messages_document_idx``: GIN on ``(customer_id, document)``
  (``btree_gin`` for the customer): one customer's matches for a word are
  the intersection of two posting lists, whatever other customers hold;
- ``convdb_search_messages_recent_idx``: ``(customer_id, sent_at DESC,
  message_id DESC)``: a customer's messages newest first, for words so
  common that reading the newest messages and checking each is cheaper, and
  for the keyset cursor.

A failed build leaves an INVALID index: drop it and run ``convdb migrate``
again (``IF NOT EXISTS`` would keep the invalid one).
"""

from convdb.sqlutil import run_sql

TRANSACTIONAL = False

BACKFILL = "CALL convdb_search_rebuild_v1(5000, false)"

DOCUMENT_IDX = """
CREATE INDEX CONCURRENTLY convdb_search_messages_document_idx
    ON convdb_search_messages USING gin (customer_id, document)
"""

RECENT_IDX = """
CREATE INDEX CONCURRENTLY convdb_search_messages_recent_idx
    ON convdb_search_messages (customer_id, sent_at DESC, message_id DESC)
"""


def migrate(migrator, database, *, fake=False):
    run_sql(migrator, BACKFILL)
    run_sql(migrator, DOCUMENT_IDX)
    run_sql(migrator, RECENT_IDX)


def rollback(migrator, database, *, fake=False):
    run_sql(migrator, "DROP INDEX CONCURRENTLY IF EXISTS convdb_search_messages_recent_idx")
    run_sql(migrator, "DROP INDEX CONCURRENTLY IF EXISTS convdb_search_messages_document_idx")
