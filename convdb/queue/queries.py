"""Every SQL statement the queue runs, by name.

:mod:`convdb.queue.manager` is the only caller. Parameters are psycopg2
``%(name)s`` placeholders. The lifecycle of a row::

    pending --CLAIM--> processing --(batch commits)--> done
       ^                  |  \\--permanent failure--> dead
       |                  |--transient failure, attempts < max--> pending (later)
       |                  \\--lease expired (worker died)--> claimable again, in a group half
       |                                      the size; dead at max if it was held alone
       \\------------------------------RETRY_DEAD------------------------------ dead
"""

#: The channel ``enqueue`` notifies and idle workers ``LISTEN`` on.
CHANNEL = "convdb_inbound_events"

# When a row is due: a pending row at ``available_at``, a processing row when
# its lease (``locked_until``) runs out. Written exactly as in the expression
# of ``inbound_events_claim_idx`` (``004_baseline_views_and_queue``) so the planner
# can use it.
DUE = "(CASE status WHEN 'pending' THEN available_at ELSE locked_until END)"

# Parts of the claim's UPDATE, about the row as it was before the claim (``e``).
# Its lease expired: the worker holding it stopped (killed, out of memory, a
# crash in a C extension) or lost the database.
EXPIRED = "e.status = 'processing'"
# ... and it was held alone, so it alone can have stopped that worker.
ALONE = "coalesce(e.claim_group, 1) = 1"
# ... on its last allowed attempt: it goes dead instead of round again.
SPENT = f"{EXPIRED} AND {ALONE} AND e.attempts >= %(max_attempts)s"

CLAIM = f"""
WITH due AS (
    SELECT id, {DUE} AS due_at, status, claim_group, payload_bytes
      FROM inbound_events
     -- Only pending and processing rows are in the partial index: done and
     -- dead rows, however many, are never scanned.
     WHERE status IN ('pending', 'processing')
       -- Due now: a pending row whose time has come, or a processing row
       -- whose lease expired (its worker died or lost the database).
       AND {DUE} <= now()
     -- Oldest due first, walking the index in order: the scan is not sorted,
     -- and LIMIT stops it after a batch.
     ORDER BY {DUE}, id
     LIMIT %(limit)s
     -- Lock the chosen rows; rows another worker is claiming (or a batch is
     -- processing) at this moment are skipped, not waited for. A row claimed
     -- and committed by another worker since our snapshot is re-checked
     -- against the WHERE clause and no longer due: no event is claimed twice.
     FOR UPDATE SKIP LOCKED
), running AS (
    -- Over the locked rows in due order (a sort of at most one batch:
    -- locking leaves the index order unknown to the planner).
    SELECT id,
           row_number() OVER w AS n,
           -- Crash isolation: a row whose lease expired was held by a worker
           -- that died with it. It may now be claimed only in a group of at
           -- most half the size of the group it was in, so a batch a
           -- crashing event is in halves at each crash, down to one event.
           min(CASE WHEN status = 'processing' THEN greatest(claim_group / 2, 1) END)
               OVER w AS group_limit,
           -- Bytes of the payloads up to this row; a payload over the size
           -- limit is never sent (see RETURNING) and weighs nothing.
           sum(CASE WHEN payload_bytes <= %(max_payload_bytes)s THEN payload_bytes ELSE 0 END)
               OVER w AS bytes_through
      FROM due
    WINDOW w AS (ORDER BY due_at, id ROWS UNBOUNDED PRECEDING)
), chosen AS (
    -- The longest run from the oldest row that keeps within every row's
    -- group limit and within max_bytes (the first row always: an event is
    -- never too big to be claimed). Rows locked but not chosen stay as they
    -- are, due first for the next claim.
    SELECT id FROM running
     WHERE n <= coalesce(group_limit, n) AND (n = 1 OR bytes_through <= %(max_bytes)s)
)
UPDATE inbound_events AS e
   SET status = CASE WHEN {SPENT} THEN 'dead' ELSE 'processing' END,
       last_error = CASE
           WHEN {SPENT}
           THEN 'abandoned: its worker (' || coalesce(e.locked_by, '?') || ') stopped while '
                || 'processing this event alone (lease expired) on attempt ' || e.attempts
                || ' of ' || %(max_attempts)s || ': the event kills or stalls its worker'
           WHEN {EXPIRED} AND {ALONE}
           THEN 'abandoned on attempt ' || e.attempts || ': its worker ('
                || coalesce(e.locked_by, '?') || ') stopped while processing it alone '
                || '(lease expired)'
           WHEN {EXPIRED}
           THEN 'reclaimed: its worker (' || coalesce(e.locked_by, '?') || ') stopped while '
                || 'processing it in a group of ' || e.claim_group || ' (lease expired); '
                || 'the attempt was given back'
           ELSE e.last_error END,
       -- Counted at claim time and committed at once, so an event that kills
       -- its worker uses up its attempts; but only when it was held alone:
       -- a row of a bigger group gets back the attempt it was charged (net
       -- zero), since any of its group may have been the culprit.
       attempts = e.attempts + CASE WHEN {EXPIRED} AND NOT {ALONE} THEN 0
                                    WHEN {SPENT} THEN 0 ELSE 1 END,
       claim_group = (SELECT count(*) FROM chosen),
       -- The lease: until then no other worker takes the row.
       locked_by = %(worker)s,
       locked_until = now() + make_interval(secs => %(lease)s),
       processed_at = CASE WHEN {SPENT} THEN now() END
       -- By primary key: an array of ids, never a join that could hash the table.
 WHERE e.id = ANY(ARRAY(SELECT id FROM chosen))
-- The payload as text: the worker decodes each on its own, so one that
-- cannot be decoded fails its event alone. NULL when over the size limit.
RETURNING e.id, e.event_type,
          CASE WHEN e.status = 'processing' AND e.payload_bytes <= %(max_payload_bytes)s
               THEN e.payload::text END AS payload,
          e.idempotency_key, e.received_at, e.available_at, e.attempts, e.status,
          e.last_error, e.locked_by, e.locked_until, e.payload_bytes, e.claim_group
"""

# At the start of a batch transaction: lock the claimed rows that are still
# ours. A row whose lease expired and was claimed by another worker in the
# meantime is not ours any more and is skipped. Holding these row locks until
# the batch commits keeps every other claim off them (SKIP LOCKED), even if
# the lease runs out while the batch is still working.
LOCK_OWNED = """
SELECT id FROM inbound_events
 WHERE id = ANY(%(ids)s::bigint[]) AND locked_by = %(worker)s AND status = 'processing'
 ORDER BY id
   FOR UPDATE
"""

# Success, in the batch transaction that also holds the handlers' writes.
MARK_DONE = """
UPDATE inbound_events
   SET status = 'done', processed_at = now(), locked_until = NULL, last_error = NULL
 WHERE id = ANY(%(ids)s::bigint[]) AND locked_by = %(worker)s AND status = 'processing'
"""

# The batch fast path: mark every claimed row still ours done FIRST. The
# UPDATE locks them (as LOCK_OWNED would) and says which are ours; it commits
# with the handlers' writes or rolls back with them. One statement and one
# new row version per event instead of a lock and an update.
CLAIM_DONE = """
UPDATE inbound_events
   SET status = 'done', processed_at = now(), locked_until = NULL, last_error = NULL
 WHERE id = ANY(%(ids)s::bigint[]) AND locked_by = %(worker)s AND status = 'processing'
RETURNING id
"""

# An event the batch handler refused, after CLAIM_DONE in the same transaction.
REFUSE = """
UPDATE inbound_events
   SET status = 'dead', last_error = %(error)s
 WHERE id = %(id)s AND locked_by = %(worker)s AND status = 'done'
"""

MARK_DEAD = """
UPDATE inbound_events
   SET status = 'dead', processed_at = now(), locked_until = NULL, last_error = %(error)s
 WHERE id = %(id)s AND locked_by = %(worker)s AND status = 'processing'
"""

# Transient failure: back to pending, due again after the backoff.
MARK_RETRY = """
UPDATE inbound_events
   SET status = 'pending', locked_until = NULL, last_error = %(error)s,
       available_at = now() + make_interval(secs => %(delay)s)
 WHERE id = %(id)s AND locked_by = %(worker)s AND status = 'processing'
"""

# Claimed but never tried (shutdown, lost connection): back to pending, due at
# once, and the attempt counted at claim time is given back.
RELEASE = """
UPDATE inbound_events
   SET status = 'pending', locked_by = NULL, locked_until = NULL,
       attempts = greatest(attempts - 1, 0)
 WHERE id = ANY(%(ids)s::bigint[]) AND locked_by = %(worker)s AND status = 'processing'
"""

# Seconds until the next row becomes due (NULL: nothing pending or processing).
NEXT_DUE = f"""
SELECT extract(epoch FROM min({DUE}) - now())::float8
  FROM inbound_events
 WHERE status IN ('pending', 'processing')
"""

DEPTH = """
SELECT count(*) FROM inbound_events WHERE status = 'pending' AND available_at <= now()
"""

STATS_BY_TYPE = """
SELECT event_type, status, count(*) FROM inbound_events GROUP BY 1, 2 ORDER BY 1, 2
"""

STATS_SUMMARY = """
SELECT extract(epoch FROM now() - min(received_at)
               FILTER (WHERE status = 'pending' AND available_at <= now()))::float8,
       count(*) FILTER (WHERE status = 'pending' AND attempts > 0),
       count(*) FILTER (WHERE status = 'pending' AND available_at > now()),
       count(*) FILTER (WHERE status = 'processing' AND locked_until < now())
  FROM inbound_events
 WHERE status IN ('pending', 'processing')
"""

# Delivery reports waiting for their message (message_id NULL: the early
# reports of convdb.ingest.status), through their partial index.
EARLY_REPORTS = """
SELECT count(*) FROM message_status_reports WHERE message_id IS NULL
"""

# Dead events back to pending: all, of one type, the given ids, and (for a
# bulk action confirmed at one moment) only ids up to ``max_id``; at most
# ``limit`` of them (NULL: no limit) in id order, through
# ``inbound_events_dead_idx`` (migration 052), so a caller can go in batches.
DEAD_SELECTION = """
SELECT id FROM inbound_events
 WHERE status = 'dead'
   AND (%(event_type)s::text IS NULL OR event_type = %(event_type)s)
   AND (%(ids)s::bigint[] IS NULL OR id = ANY(%(ids)s::bigint[]))
   AND (%(max_id)s::bigint IS NULL OR id <= %(max_id)s::bigint)
 ORDER BY id
 LIMIT %(limit)s
"""

RETRY_DEAD = f"""
WITH revived AS (
    UPDATE inbound_events
       SET status = 'pending', attempts = 0, available_at = now(), locked_by = NULL,
           locked_until = NULL, processed_at = NULL
     WHERE id = ANY(ARRAY({DEAD_SELECTION})) AND status = 'dead'
    RETURNING id
)
SELECT count(*) FROM revived
"""

# Dead events deleted, chosen like RETRY_DEAD's.
PURGE_DEAD = f"""
DELETE FROM inbound_events
 WHERE id = ANY(ARRAY({DEAD_SELECTION})) AND status = 'dead'
"""

# In slices, so purging millions of rows never holds one huge transaction.
PURGE_DONE = """
DELETE FROM inbound_events
 WHERE id IN (SELECT id FROM inbound_events
               WHERE status = 'done' AND processed_at < now() - make_interval(secs => %(age)s)
               LIMIT %(limit)s)
"""

# The one INSERT of events, for enqueue (QueueManager.insert) and the
# receiver's group commit: every row of a batch in one statement, in input
# order (ids follow it), and one NOTIFY when anything was stored, delivered to
# idle workers at commit; outside a transaction the statement commits on its
# own (one round trip for a single event). pg_notify is volatile, so the CTE
# ``n`` is evaluated once, not per row. Returns (id, idempotency_key) of each
# row stored: a key already stored, or repeated earlier in the batch, is
# skipped.
INSERT_EVENTS = """
WITH ins AS (
    INSERT INTO inbound_events (event_type, payload, idempotency_key, available_at)
    SELECT u.t, u.p::jsonb, u.k, now() + make_interval(secs => u.d)
      -- A function scan returns the arrays' elements in order: ids follow the
      -- input without sorting the payloads.
      FROM unnest(%(types)s::text[], %(payloads)s::text[], %(keys)s::text[],
                  %(delays)s::float8[]) AS u(t, p, k, d)
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id, idempotency_key
), n AS (
    SELECT pg_notify(%(channel)s, %(event_type)s) FROM (SELECT 1 FROM ins LIMIT 1) stored
)
SELECT ins.id, ins.idempotency_key FROM ins LEFT JOIN n ON true ORDER BY ins.id
"""

NOTIFY = "SELECT pg_notify(%(channel)s, %(event_type)s)"

# --- the operator console's views of the queue ---------------------------------

# Exact counts of the rows that are not done, by type: pending and processing
# through the claim index, dead through inbound_events_dead_idx. The done
# rows, however many, are not read (see DONE_ESTIMATE).
LIVE_COUNTS = """
SELECT event_type, status, count(*) FROM inbound_events
 WHERE status IN ('pending', 'processing')
 GROUP BY 1, 2
UNION ALL
SELECT event_type, 'dead', count(*) FROM inbound_events WHERE status = 'dead' GROUP BY 1
"""

# The table's row count as the planner last measured it (ANALYZE, autovacuum);
# done is about this minus the exact live counts. NULL before any ANALYZE.
TABLE_ESTIMATE = """
SELECT CASE WHEN reltuples >= 0 THEN reltuples::bigint END
  FROM pg_class WHERE oid = 'inbound_events'::regclass
"""

# The head of the queue: the pending event due first (what a worker claims
# next), with how long it has waited since it arrived.
HEAD = """
SELECT id, event_type, received_at, available_at, attempts,
       extract(epoch FROM now() - received_at)::float8
  FROM inbound_events
 WHERE status = 'pending'
 ORDER BY available_at, id
 LIMIT 1
"""

# Events finished (done or dead) per minute and per worker since
# %(since)s, through inbound_events_processed_at_idx (migration 052).
FINISHED_BY_MINUTE = """
SELECT date_trunc('minute', processed_at) AS minute, coalesce(locked_by, '?'),
       count(*) FILTER (WHERE status = 'done'), count(*) FILTER (WHERE status = 'dead'),
       max(processed_at)
  FROM inbound_events
 WHERE processed_at IS NOT NULL AND processed_at >= %(since)s
 GROUP BY 1, 2
"""

# Events received per minute since %(since)s: every one of them is either
# finished since then (it was processed after it arrived) or not finished.
RECEIVED_BY_MINUTE = """
SELECT date_trunc('minute', received_at), count(*)
  FROM (SELECT received_at FROM inbound_events
         WHERE processed_at IS NOT NULL AND processed_at >= %(since)s
           AND received_at >= %(since)s
        UNION ALL
        SELECT received_at FROM inbound_events
         WHERE status IN ('pending', 'processing') AND received_at >= %(since)s) r
 GROUP BY 1
"""

# Workers holding events now (leases not expired).
HOLDING = """
SELECT locked_by, count(*), max(locked_until)
  FROM inbound_events
 WHERE status = 'processing' AND locked_until >= now()
 GROUP BY 1
"""

# One page of dead events, newest first (keyset on id).
DEAD_PAGE = """
SELECT id, event_type, received_at, processed_at, attempts, left(last_error, 500)
  FROM inbound_events
 WHERE status = 'dead'
   AND (%(event_type)s::text IS NULL OR event_type = %(event_type)s)
   AND (%(before)s::bigint IS NULL OR id < %(before)s::bigint)
 ORDER BY id DESC
 LIMIT %(limit)s
"""

# The dead selection's size and its newest id (what a bulk action confirms).
DEAD_SUMMARY = """
SELECT count(*), max(id) FROM inbound_events
 WHERE status = 'dead'
   AND (%(event_type)s::text IS NULL OR event_type = %(event_type)s)
   AND (%(max_id)s::bigint IS NULL OR id <= %(max_id)s::bigint)
"""

EVENT = """
SELECT id, event_type, status, received_at, available_at, processed_at, attempts,
       last_error, locked_by, idempotency_key, payload_bytes,
       CASE WHEN payload_bytes <= %(max_bytes)s THEN payload::text END
  FROM inbound_events
 WHERE id = %(id)s
"""
