"""Per-endpoint delivery counters, kept by the receiver for the operator console.

Queue rows do not record which endpoint stored them, and ``done`` rows are
purged, so "when did this endpoint last receive anything, and how much over
the last day" cannot be read from ``inbound_events``. The receiver's group
commit adds, in the transaction that stores a group of events, one statement
that counts the group's stored events per endpoint into the current hour's
row here (``convdb/serve/groupcommit.py``, ``COUNT_DELIVERIES``).

- ``hour``: the start of the hour (UTC) the events were stored in.
- ``shard``: the writing backend's process id, so several receiver
  processes never wait on one another's counter row (each commits its own
  row; readers add the shards up).
- ``deliveries``: events stored (a redelivery of an event already stored,
  answered 2xx again, is not counted twice); ``last_delivery_at``: when the
  latest of them was stored.

Rows older than the retention the receiver applies (8 days) are deleted by
the receiver with its expired nonces. An endpoint's rows go with it.
"""

from convdb.migrate.sql import run_sql

ENDPOINT_DELIVERIES = """
CREATE TABLE webhook_endpoint_deliveries (
    endpoint_id       BIGINT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    hour              TIMESTAMPTZ NOT NULL,
    shard             INT NOT NULL,
    deliveries        BIGINT NOT NULL CHECK (deliveries >= 0),
    last_delivery_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (endpoint_id, hour, shard)
)
"""

ENDPOINT_DELIVERIES_HOUR_INDEX = """
CREATE INDEX webhook_endpoint_deliveries_hour_idx ON webhook_endpoint_deliveries (hour)
"""


def migrate(migrator, database, *, fake=False):
    run_sql(migrator, ENDPOINT_DELIVERIES)
    run_sql(migrator, ENDPOINT_DELIVERIES_HOUR_INDEX)


def rollback(migrator, database, *, fake=False):
    run_sql(migrator, "DROP TABLE webhook_endpoint_deliveries")
