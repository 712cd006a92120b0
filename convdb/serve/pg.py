"""The receiver's own PostgreSQL connections: plain psycopg2, tuned for it, errors named.

The writer and the reader each own one connection on one thread (no pool):
:func:`open_connection` opens it with convdb's connection parameters
(:mod:`convdb.pgconnect`: keepalives, a user timeout, and
``target_session_attrs=read-write``, so that with several hosts it reaches
the primary, and after a failover the new one), durable commits (a server
whose ``synchronous_commit`` is ``off`` is overruled with ``on``: a 2xx is
only ever sent after the WAL is flushed; ``local``, ``remote_write``,
``remote_apply`` are kept, so a deployment that waits for a synchronous
standby keeps doing so), a statement timeout, a limit on idling inside a
transaction (a session whose client vanished mid-transaction gives its
locks back by itself), and UTC.

Each call on these connections is also watched (:mod:`convdb.watchdog`): one
the server never answers is cancelled and its connection dropped.
"""

from __future__ import annotations

import contextlib

import psycopg2

from ..exceptions import DatabaseError
from ..pgconnect import connect_params, describe_connect_error, no_writable_host, role_of
from ..pgerrors import is_connection_error, sqlstate

# Past its deadline a call is aborted; the server's own statement_timeout (the
# same number) gets this long to answer first with a proper error.
WATCHDOG_SLACK = 2.0

SESSION = """
SELECT set_config('synchronous_commit', 'on', false)
 WHERE current_setting('synchronous_commit') = 'off';
SET TIME ZONE 'UTC';
SET statement_timeout = %(ms)s;
SET idle_in_transaction_session_timeout = %(ms)s
"""


class Unavailable(DatabaseError):
    """The database cannot be reached now (the request gets 503 and Retry-After)."""

    standbys_only = False  # every host answered as a standby: waiting for a promotion


def open_connection(url: str, *, name: str, statement_timeout: float):
    """A psycopg2 connection for ``convdb serve``; :class:`Unavailable` when refused.

    :attr:`Unavailable.standbys_only` says that hosts answered, but only standbys.
    """
    try:
        params = connect_params(url, role_of(url))  # the console's pages may read a replica
        conn = psycopg2.connect(url, application_name=name, **params)
    except psycopg2.Error as exc:
        error = Unavailable(describe_connect_error(url, exc))
        error.standbys_only = no_writable_host(exc)
        raise error from None
    try:
        with conn.cursor() as cur:
            cur.execute(SESSION, {"ms": int(statement_timeout * 1000)})
        conn.commit()
    except psycopg2.Error as exc:
        conn.close()
        raise Unavailable(f"the database refused the session settings: {exc}") from None
    return conn


def close_quietly(conn) -> None:
    if conn is not None:
        with contextlib.suppress(psycopg2.Error):
            conn.close()


__all__ = [
    "WATCHDOG_SLACK",
    "Unavailable",
    "close_quietly",
    "is_connection_error",
    "open_connection",
    "sqlstate",
]
