"""Two partial indexes of ``inbound_events`` for the operator console.

- ``inbound_events_processed_at_idx``: finished events by ``processed_at``.
  The queue page charts the last hour from the events' own timestamps and
  lists the workers seen recently (``locked_by`` of the events they
  finished); without it both read the whole table. Partial
  (``processed_at IS NOT NULL``: done and dead events), so inserting an
  event and claiming it cost nothing more; marking it done adds one entry.
- ``inbound_events_dead_idx``: dead events by id, with their event type.
  The dead-events page pages through them newest first, counts them by
  type, and retries or purges them in batches, without walking the done
  rows. Only dead rows are in it.

Built ``CONCURRENTLY`` (this module runs outside a transaction), so a
receiver and workers keep writing while it builds. A build that fails
leaves an INVALID index behind: drop it and run ``convdb migrate`` again.
"""

from convdb.migrate.sql import run_sql

TRANSACTIONAL = False

PROCESSED_AT_INDEX = """
CREATE INDEX CONCURRENTLY IF NOT EXISTS inbound_events_processed_at_idx
    ON inbound_events (processed_at) WHERE processed_at IS NOT NULL
"""

DEAD_INDEX = """
CREATE INDEX CONCURRENTLY IF NOT EXISTS inbound_events_dead_idx
    ON inbound_events (id) INCLUDE (event_type) WHERE status = 'dead'
"""


def migrate(migrator, database, *, fake=False):
    run_sql(migrator, PROCESSED_AT_INDEX)
    run_sql(migrator, DEAD_INDEX)


def rollback(migrator, database, *, fake=False):
    run_sql(migrator, "DROP INDEX CONCURRENTLY IF EXISTS inbound_events_dead_idx")
    run_sql(migrator, "DROP INDEX CONCURRENTLY IF EXISTS inbound_events_processed_at_idx")
