"""``conversations_inbox_idx`` carries the counters: the inbox page reads only the index.

011's index finds a customer's 50 latest conversations in order, but each of
the 50 rows is then read from the heap, and at scale they sit on 50 different
pages (counter updates move rows around). With ``message_count`` and
``participant_count`` included, the inbox page is an index-only scan: at
1,000,000 messages, 53 buffers and 0.14 ms of server time become 4 buffers
and 0.03 ms (``EXPLAIN (ANALYZE, BUFFERS)``), as long as autovacuum keeps the
visibility map current (012 makes it run early on ``conversations``).

The cost: a participant change now writes index entries too (012's note on
HOT updates applied to it); a message already did, through
``last_message_at``.

Same index name, so plans and tests keep naming it; rollback restores 011's
definition.
"""

from convdb.sqlutil import run_sql

COVERING = """
DROP INDEX conversations_inbox_idx;
CREATE INDEX conversations_inbox_idx
    ON conversations (customer_id, last_message_at DESC NULLS LAST, id DESC)
    INCLUDE (message_count, participant_count)
"""

# 011_inbox_index_and_overview's index, verbatim.
PLAIN = """
DROP INDEX conversations_inbox_idx;
CREATE INDEX conversations_inbox_idx
    ON conversations (customer_id, last_message_at DESC NULLS LAST, id DESC)
"""


def migrate(migrator, database, *, fake=False):
    run_sql(migrator, COVERING)


def rollback(migrator, database, *, fake=False):
    run_sql(migrator, PLAIN)
