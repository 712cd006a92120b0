"""The receiver's own PostgreSQL connections: plain psycopg2, tuned for it, errors named.

The writer and the reader each own one connection on one thread (no pool):
:func:`open_connection` opens it with durable commits forced on
(``synchronous_commit``: a 2xx is only ever sent after the WAL is flushed,
whatever the server's default), a statement timeout, and UTC.
"""

from __future__ import annotations

import contextlib

import psycopg2

from ..db import describe_connect_error
from ..exceptions import DatabaseError
from ..pgerrors import is_connection_error, sqlstate

CONNECT_TIMEOUT = 3


class Unavailable(DatabaseError):
    """The database cannot be reached now (the request gets 503 and Retry-After)."""


def open_connection(url: str, *, name: str, statement_timeout: float):
    """A psycopg2 connection for ``convdb serve``; :class:`Unavailable` when refused."""
    try:
        conn = psycopg2.connect(url, application_name=name, connect_timeout=CONNECT_TIMEOUT)
    except psycopg2.Error as exc:
        raise Unavailable(describe_connect_error(url, exc)) from None
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SET synchronous_commit = on; SET TIME ZONE 'UTC'; SET statement_timeout = %s",
                (int(statement_timeout * 1000),),
            )
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
    "Unavailable",
    "close_quietly",
    "is_connection_error",
    "open_connection",
    "sqlstate",
]
