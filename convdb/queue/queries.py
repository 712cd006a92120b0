"""Every SQL statement the queue runs, by name.

:mod:`convdb.queue.manager` is the only caller. Parameters are psycopg2
``%(name)s`` placeholders. The lifecycle of a row::

    pending --CLAIM--> processing --(batch commits)--> done
       ^                  |  \\--permanent failure--> dead
       |                  |--transient failure, attempts < max--> pending (later)
       |                  \\--lease expired (worker died)--> claimable again, or dead at max
       \\------------------------------RETRY_DEAD------------------------------ dead
"""

#: The channel ``enqueue`` notifies and idle workers ``LISTEN`` on.
CHANNEL = "convdb_inbound_events"

# When a row is due: a pending row at ``available_at``, a processing row when
# its lease (``locked_until``) runs out. Written exactly as in the expression
# of ``inbound_events_claim_idx`` (``004_baseline_views_and_queue``) so the planner
# can use it.
DUE = "(CASE status WHEN 'pending' THEN available_at ELSE locked_until END)"

CLAIM = f"""
WITH due AS (
    SELECT id
      FROM inbound_events
     -- Only pending and processing rows are in the partial index: done and
     -- dead rows, however many, are never scanned.
     WHERE status IN ('pending', 'processing')
       -- Due now: a pending row whose time has come, or a processing row
       -- whose lease expired (its worker died or lost the database).
       AND {DUE} <= now()
     -- Oldest due first, walking the index in order: no sort, and LIMIT stops
     -- the scan after the batch.
     ORDER BY {DUE}, id
     LIMIT %(limit)s
     -- Lock the chosen rows; rows another worker is claiming (or a batch is
     -- processing) at this moment are skipped, not waited for. A row claimed
     -- and committed by another worker since our snapshot is re-checked
     -- against the WHERE clause and no longer due: no event is claimed twice.
     FOR UPDATE SKIP LOCKED
)
UPDATE inbound_events AS e
       -- A row whose lease expired after its last allowed attempt killed or
       -- stalled a worker every time: it goes dead instead of round again.
   SET status = CASE WHEN e.status = 'processing' AND e.attempts >= %(max_attempts)s
                     THEN 'dead' ELSE 'processing' END,
       last_error = CASE WHEN e.status = 'processing' AND e.attempts >= %(max_attempts)s
                         THEN 'abandoned: the worker holding it stopped (lease expired) on '
                              || 'attempt ' || e.attempts || ' of ' || %(max_attempts)s
                         ELSE e.last_error END,
       -- Counted at claim time and committed at once, so an event that kills
       -- its worker still uses up its attempts.
       attempts = e.attempts + CASE WHEN e.status = 'processing'
                                     AND e.attempts >= %(max_attempts)s THEN 0 ELSE 1 END,
       -- The lease: until then no other worker takes the row.
       locked_by = %(worker)s,
       locked_until = now() + make_interval(secs => %(lease)s),
       processed_at = CASE WHEN e.status = 'processing' AND e.attempts >= %(max_attempts)s
                           THEN now() ELSE NULL END
       -- By primary key: an array of ids, never a join that could hash the table.
 WHERE e.id = ANY(ARRAY(SELECT id FROM due))
RETURNING e.id, e.event_type, e.payload, e.idempotency_key, e.received_at, e.available_at,
          e.attempts, e.status, e.last_error, e.locked_by, e.locked_until
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

RETRY_DEAD = """
WITH revived AS (
    UPDATE inbound_events
       SET status = 'pending', attempts = 0, available_at = now(), locked_by = NULL,
           locked_until = NULL, processed_at = NULL
     WHERE status = 'dead'
       AND (%(event_type)s::text IS NULL OR event_type = %(event_type)s)
       AND (%(ids)s::bigint[] IS NULL OR id = ANY(%(ids)s::bigint[]))
    RETURNING id
)
SELECT count(*) FROM revived
"""

# In slices, so purging millions of rows never holds one huge transaction.
PURGE_DONE = """
DELETE FROM inbound_events
 WHERE id IN (SELECT id FROM inbound_events
               WHERE status = 'done' AND processed_at < now() - make_interval(secs => %(age)s)
               LIMIT %(limit)s)
"""

# Enqueue: every row of a batch in one statement, in input order (ids follow
# it), and one NOTIFY when anything was stored; the statement commits on its
# own outside a transaction (one round trip for a single event). pg_notify is
# volatile, so the CTE ``n`` is evaluated once, not per row.
INSERT_EVENTS = """
WITH ins AS (
    INSERT INTO inbound_events (event_type, payload, idempotency_key, available_at)
    SELECT u.t, u.p::jsonb, u.k, now() + make_interval(secs => u.d)
      -- A function scan returns the arrays' elements in order: ids follow the
      -- input without sorting the payloads.
      FROM unnest(%(types)s::text[], %(payloads)s::text[], %(keys)s::text[],
                  %(delays)s::float8[]) AS u(t, p, k, d)
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id
), n AS (
    SELECT pg_notify(%(channel)s, %(event_type)s) FROM (SELECT 1 FROM ins LIMIT 1) stored
)
SELECT ins.id FROM ins LEFT JOIN n ON true ORDER BY ins.id
"""

NOTIFY = "SELECT pg_notify(%(channel)s, %(event_type)s)"
