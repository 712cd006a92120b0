"""The migration lock: one PostgreSQL advisory lock for every convdb migrator.

:class:`MigrationDatabase` takes the lock when its connection opens, before
any history is read, and holds it for the whole session; it goes away with
the connection, so closing it in ``finally`` releases the lock after a
failure too (a pooled connection that kept it would hang every later
deploy). ``pw_migrate`` gets the same class through ``migrations/conf.py``.

Waiting is try-lock polling in autocommit, never a blocking
``pg_advisory_lock``: a blocked statement is an open transaction, and the
holder's ``CREATE INDEX CONCURRENTLY``, which waits for every older
transaction, would deadlock against it. Polling also lets the waiter say
whose lock it waits for.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from ..db import ConvdbDatabase, open_database, resolve_url

Echo = Callable[[str], None]

# pg_advisory_lock key shared by every convdb migrator: the first 8 bytes of
# md5("convdb.migrate") as a signed bigint.
MIGRATION_LOCK_KEY = -56033724332835728
LOCK_POLL_SECONDS = 0.25


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


class MigrationDatabase(ConvdbDatabase):
    """A database whose connection holds the migration advisory lock.

    The lock is taken at connect time, before any history is read, with
    try-lock polling (so a waiting migrator can say what it waits for, and
    holds no transaction while it waits: peewee connections are autocommit)
    and released when the connection closes, also after a failure.
    """

    def __init__(self, url: str, *, on_wait: Echo = _stderr, **kwargs) -> None:
        super().__init__(url, **kwargs)
        self._on_wait = on_wait

    def _initialize_connection(self, conn) -> None:
        super()._initialize_connection(conn)
        announced = False
        with conn.cursor() as cur:
            while True:
                cur.execute("SELECT pg_try_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
                if cur.fetchone()[0]:
                    return
                if not announced:
                    self._on_wait(
                        f"convdb: waiting for the migration lock on {self.database!r}, "
                        f"held by {_lock_holder(cur)}"
                    )
                    announced = True
                time.sleep(LOCK_POLL_SECONDS)


def _lock_holder(cur) -> str:
    cur.execute(
        """
        SELECT a.pid, a.application_name, a.client_addr
          FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
         WHERE l.locktype = 'advisory' AND l.granted
           AND l.objsubid = 1 AND ((l.classid::bigint << 32) | l.objid::bigint) = %s
        """,
        (MIGRATION_LOCK_KEY,),
    )
    row = cur.fetchone()
    if row is None:
        return "another session"
    pid, app, addr = row
    return f"backend pid {pid} ({app or 'unknown application'}, {addr or 'local socket'})"


def open_locked(url: str | None = None) -> MigrationDatabase:
    """Connect to ``url`` (default: the configured database), holding the migration lock."""
    return open_database(url or resolve_url(), db_class=MigrationDatabase)
