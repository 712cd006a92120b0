"""Per-endpoint delivery counters: written by the group commit, read by the operator console.

Queue rows do not record their endpoint and ``done`` rows are purged, so the
receiver counts what each endpoint stored (migration 050,
``webhook_endpoint_deliveries``): in the transaction that stores a group,
one statement adds the group's stored events per endpoint to the current
hour's row of the writing backend (its ``shard``), so receiver processes
never wait on each other's counter row. Redeliveries of an event already
stored are not counted. Rows older than :data:`DELIVERIES_KEPT` are deleted
with the expired nonces.

The console reads, per endpoint, the latest ``last_delivery_at`` and the sum
over the current hour and the 23 before it (:data:`ENDPOINT_ACTIVITY`).
"""

from __future__ import annotations

# Endpoints in id order (the caller sorts them): two groups of one backend
# never lock counter rows in opposite orders.
COUNT_DELIVERIES = """
INSERT INTO webhook_endpoint_deliveries AS d
       (endpoint_id, hour, shard, deliveries, last_delivery_at)
SELECT u.e, date_trunc('hour', now()), pg_backend_pid(), u.n, now()
  FROM unnest(%(endpoints)s::bigint[], %(counts)s::bigint[]) AS u(e, n)
ON CONFLICT (endpoint_id, hour, shard)
DO UPDATE SET deliveries = d.deliveries + excluded.deliveries,
              last_delivery_at = excluded.last_delivery_at
"""

#: How long hourly counters are kept (the console shows the last day).
DELIVERIES_KEPT = "8 days"

PURGE_DELIVERIES = f"""
DELETE FROM webhook_endpoint_deliveries
 WHERE ctid = ANY(ARRAY(SELECT ctid FROM webhook_endpoint_deliveries
                         WHERE hour < now() - interval '{DELIVERIES_KEPT}' LIMIT 10000))
"""

#: Per endpoint id in ``%(ids)s``: the last delivery (ever kept) and the
#: deliveries of the current hour and the 23 before it. Reads at most
#: 24 x backends rows per endpoint through the primary key.
ENDPOINT_ACTIVITY = """
SELECT e.id,
       (SELECT max(d.last_delivery_at) FROM webhook_endpoint_deliveries d
         WHERE d.endpoint_id = e.id),
       (SELECT coalesce(sum(d.deliveries), 0) FROM webhook_endpoint_deliveries d
         WHERE d.endpoint_id = e.id AND d.hour > now() - interval '24 hours')
  FROM unnest(%(ids)s::bigint[]) AS e(id)
"""

__all__ = ["COUNT_DELIVERIES", "DELIVERIES_KEPT", "ENDPOINT_ACTIVITY", "PURGE_DELIVERIES"]
