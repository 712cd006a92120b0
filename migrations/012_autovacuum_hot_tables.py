"""Autovacuum and fill factor for the tables that churn.

- ``conversations``: every message updates its conversation's counters, so a
  busy conversation leaves a dead row version per message. Vacuum after 2% of
  the table changed (default 20%), and leave 15% of each page free so the
  updates that leave every indexed column alone (a participant added, an older
  message deleted) stay HOT, without index writes; a new latest message
  changes ``last_message_at``, which the inbox index holds. The fill factor
  applies to pages written from now on.
- ``inbound_events``: each event is inserted, claimed and finished (three row
  versions), and the claim index only holds pending/processing rows, whose
  dead entries slow the claim scan until vacuum removes them. Vacuum after 1%
  changed or 5% inserted, without cost-based throttling so it keeps up with
  the worker.

Settings are per table (``ALTER TABLE ... SET``); rollback resets them.
"""

from convdb.sqlutil import run_sql

CONVERSATIONS = """
ALTER TABLE conversations SET (
    fillfactor = 85,
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_analyze_scale_factor = 0.05
)
"""

INBOUND_EVENTS = """
ALTER TABLE inbound_events SET (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_insert_scale_factor = 0.05,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_cost_delay = 0
)
"""

RESET = """
ALTER TABLE conversations RESET (
    fillfactor, autovacuum_vacuum_scale_factor, autovacuum_analyze_scale_factor
);
ALTER TABLE inbound_events RESET (
    autovacuum_vacuum_scale_factor, autovacuum_vacuum_insert_scale_factor,
    autovacuum_analyze_scale_factor, autovacuum_vacuum_cost_delay
)
"""


def migrate(migrator, database, *, fake=False):
    run_sql(migrator, CONVERSATIONS)
    run_sql(migrator, INBOUND_EVENTS)


def rollback(migrator, database, *, fake=False):
    run_sql(migrator, RESET)
