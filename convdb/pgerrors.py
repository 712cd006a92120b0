"""What a PostgreSQL error means: its SQLSTATE, and whether trying again can help.

The one home of the driver-error rules that the queue, the receiver, dedup
and the tests all apply:

- :func:`sqlstate`: the SQLSTATE behind an exception, wherever peewee or a
  ``raise ... from`` put the psycopg2 error;
- :func:`is_connection_error`: the connection is lost, refused or unusable,
  or it landed on a standby (discard it, reconnect, then retry);
- :func:`is_transient`: retry with backoff, or fail for good (the
  classification table is in ``docs/queue.md``).
"""

from __future__ import annotations

from collections.abc import Iterator

import peewee
import psycopg2

from .exceptions import TransientError

__all__ = [
    "CONNECTION_SQLSTATES",
    "READ_ONLY_SQLSTATE",
    "TRANSIENT_SQLSTATES",
    "chain",
    "is_connection_error",
    "is_transient",
    "sqlstate",
]

# The only failures worth retrying: serialization_failure, deadlock_detected,
# lock_not_available (lock_timeout), query_canceled (statement_timeout or an
# administrator's pg_cancel_backend), and lost connections: class 08 and the
# server going away (57P01 admin_shutdown, 57P02 crash_shutdown, 57P03
# cannot_connect_now), and 25006 read_only_sql_transaction: the connection is
# on a standby (a failover demoted its server, or the URL let libpq pick any
# host), so it is discarded and the next one, made with
# target_session_attrs=read-write, finds the primary. Every other error is
# permanent.
READ_ONLY_SQLSTATE = "25006"
CONNECTION_SQLSTATES = frozenset({"57P01", "57P02", "57P03", READ_ONLY_SQLSTATE})
TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55P03", "57014"}) | CONNECTION_SQLSTATES

_CONNECTION_ERRORS = (
    psycopg2.InterfaceError,
    psycopg2.OperationalError,
    peewee.InterfaceError,
    peewee.OperationalError,
)


def chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, its causes and contexts, and exceptions it wraps (peewee keeps the
    psycopg2 error as its first argument)."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        candidate = todo.pop(0)
        if candidate is None or id(candidate) in seen:
            continue
        seen.add(id(candidate))
        yield candidate
        todo.extend(a for a in getattr(candidate, "args", ()) if isinstance(a, BaseException))
        todo.extend([candidate.__cause__, candidate.__context__])


def sqlstate(exc: BaseException) -> str | None:
    """The PostgreSQL SQLSTATE behind ``exc``, if any."""
    for candidate in chain(exc):
        code = getattr(candidate, "pgcode", None)
        if code:
            return code
    return None


def is_connection_error(exc: BaseException) -> bool:
    """A lost, refused or unusable connection, or one on a standby (discard it,
    reconnect, then retry)."""
    code = sqlstate(exc)
    if code is not None:
        return code.startswith("08") or code in CONNECTION_SQLSTATES
    return any(isinstance(e, _CONNECTION_ERRORS) for e in chain(exc))


def is_transient(exc: BaseException) -> bool:
    """Retry with backoff (True) or fail for good (False)?

    Transient: a lost connection, a write on a standby (25006), a deadlock, a
    serialization failure, a lock or statement timeout, an administrator's
    cancel (SQLSTATEs above), and a
    :class:`~convdb.exceptions.TransientError` raised on purpose. Everything
    else is permanent: invalid payloads, data the database refuses (an index
    row too large, a value out of range), Python errors such as
    ``OverflowError``, ``RecursionError`` or ``MemoryError``: running the same
    work again would fail the same way.
    """
    if any(isinstance(e, TransientError) for e in chain(exc)):
        return True
    code = sqlstate(exc)
    if code is not None:
        return code in TRANSIENT_SQLSTATES or code.startswith("08")
    return is_connection_error(exc)
