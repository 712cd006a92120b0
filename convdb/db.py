"""Connections: one database class, UTC on every connection, errors translated once.

``database`` is the proxy every model is bound to; :func:`init` points it at a
real database. :func:`connect` resolves the URL (``DATABASE_URL``, ``.env``, or
the embedded server), opens a :class:`ConvdbDatabase` and turns a refused or
unreachable connection into a one-paragraph :class:`DatabaseError` that never
shows the password.

Every connection gets convdb's libpq parameters (:mod:`convdb.pgconnect`:
keepalives, a user timeout, ``target_session_attrs=read-write`` for the
database that takes the writes). Read-only work (:func:`connect_read`) goes
to ``CONVDB_READ_URL`` when it is set, in read-only sessions; whatever
decides a write reads from ``DATABASE_URL``. The replicas' own functions
(lag, :func:`wait_for_replay`) are in :mod:`convdb.replicas`.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import peewee
import psycopg2

from .config import Settings, load_settings
from .dburl import mask_url, validate_url
from .exceptions import ConfigError, DatabaseError
from .pgconnect import (
    ConnectOptions,
    Role,
    connect_hint,
    connect_params,
    describe_connect_error,
    role_of,
)

database = peewee.DatabaseProxy()


class ConvdbDatabase(peewee.PostgresqlDatabase):
    """A PostgreSQL database opened from a URL; every session works in UTC.

    libpq parses the URL itself (percent-encoded passwords, IPv6 hosts, socket
    folders in ``?host=``), so what works for ``psql`` works here. Only the
    database *name* is kept in ``.database``, so a tool that prints it (like
    ``pw_migrate``) never prints the password.
    """

    #: Set by the processes that must not hang (the worker): every call on a
    #: connection is watched, and aborted past ``call_deadline`` seconds.
    watchdog = None
    call_deadline = 60.0

    def __init__(
        self,
        url: str,
        *,
        role: Role | None = None,
        read_only: bool | None = None,
        options: ConnectOptions | None = None,
        **kwargs,
    ) -> None:
        params = validate_url(url)
        settings = load_settings() if options is None or role is None else None
        if role is None:
            # The read URL opened as any other (open_database(resolve_read_url())).
            role = role_of(url, settings)
        self.url = url
        self.read_only = role == "read" if read_only is None else read_only
        self.session: dict[str, str] = {}  # more settings for every new session (SET)
        kwargs.setdefault("application_name", "convdb")
        options = options or ConnectOptions.from_settings(settings)
        for key, value in connect_params(url, role, options).items():
            kwargs.setdefault(key, value)
        super().__init__(params["dbname"], dsn=url, **kwargs)

    @property
    def masked_url(self) -> str:
        return mask_url(self.url)

    def _initialize_connection(self, conn) -> None:
        # A naive timestamp is read in the session's time zone: pin it, so
        # every value convdb writes or reads is UTC whatever the server says.
        sql = "SET TIME ZONE 'UTC'"
        if self.read_only:
            sql += "; SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY"
        sql += "".join(f"; SET {name} = %s" for name in self.session)
        with conn.cursor() as cur:
            cur.execute(sql, tuple(self.session.values()))

    # --- the watchdog's view of each call -------------------------------------------

    def _guarded(self):
        if self.watchdog is None or self.is_closed():
            return contextlib.nullcontext()
        return self.watchdog.guard(self._state.conn, self.call_deadline, "a query")

    def execute_sql(self, sql, params=None):
        with self._guarded():
            return super().execute_sql(sql, params)

    def begin(self, *args, **kwargs):
        with self._guarded():
            return super().begin(*args, **kwargs)

    def commit(self):
        with self._guarded():
            return super().commit()

    def rollback(self):
        with self._guarded():
            return super().rollback()


def with_database(url: str, name: str) -> str:
    """``url`` with its database name replaced by ``name``."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def open_database(url: str, *, db_class: type[ConvdbDatabase] = ConvdbDatabase, **kwargs):
    """Open (and connect) a database at ``url`` or raise :class:`DatabaseError`.

    When every host answered but none accepts writes (all standbys), the
    message names ``target_session_attrs`` and the hint says what to do.
    """
    try:
        db = db_class(url, **kwargs)
        db.connect()
    except ConfigError:
        raise
    except (peewee.DatabaseError, psycopg2.Error) as exc:
        variable = "CONVDB_READ_URL" if kwargs.get("role") == "read" else "DATABASE_URL"
        raise DatabaseError(
            describe_connect_error(url, exc), hint=connect_hint(exc, variable)
        ) from None
    return db


def resolve_url(settings: Settings | None = None, *, announce: bool = True) -> str:
    """The database URL to use: ``DATABASE_URL`` (or ``.env``), else the embedded server."""
    settings = settings or load_settings()
    if settings.database_url:
        return settings.database_url
    from . import embedded  # starting a server is rare: import on demand

    url = embedded.ensure_database(settings.data_dir)
    if announce:
        print(
            f"convdb: DATABASE_URL is not set; using the embedded PostgreSQL in "
            f"{settings.data_dir} ({mask_url(url)})",
            file=sys.stderr,
        )
    return url


def resolve_read_url(settings: Settings | None = None, *, announce: bool = True) -> str:
    """The URL for read-only work: ``CONVDB_READ_URL`` (a replica), else :func:`resolve_url`.

    Only work that decides no write may read here: a replica can lag. Opened
    as it is (``open_database(resolve_read_url())``), ``CONVDB_READ_URL`` gets
    read-only sessions that prefer a standby; :func:`connect_read` also says
    when it reached a primary.
    """
    settings = settings or load_settings()
    return settings.read_url or resolve_url(settings, announce=announce)


def connect(url: str | None = None, *, bind: bool = True) -> ConvdbDatabase:
    """Open the configured database and, with ``bind``, point the models at it."""
    db = open_database(url or resolve_url())
    if bind:
        init(db)
    return db


def connect_read(
    url: str | None = None, settings: Settings | None = None, *, note=None
) -> ConvdbDatabase:
    """A read-only session for work that decides no write: ``url``, else :func:`resolve_read_url`.

    On ``CONVDB_READ_URL`` (several hosts allowed), or on a ``url`` given
    explicitly, libpq prefers a standby (``target_session_attrs=prefer-standby``
    unless the URL says otherwise); on ``CONVDB_READ_URL``, one that turns out
    to be a primary is used, and ``note`` (default: a line on stderr) says so
    once per process. Without ``CONVDB_READ_URL`` it reads ``DATABASE_URL``'s
    primary. What a replica returns may lag the primary by its replay lag
    (:func:`convdb.replicas.check_replicas`). Models are not bound to it.
    """
    settings = settings or load_settings()
    replica = url is None and settings.read_url is not None
    role = "read" if url is not None or replica else "write"
    url = url or resolve_read_url(settings)
    db = open_database(url, role=role, read_only=True)
    if replica:
        from .replicas import note_primary

        note_primary(db, note)
    return db


def init(db: peewee.Database) -> None:
    """Bind every convdb model (through the ``database`` proxy) to ``db``."""
    database.initialize(db)


def wait_for_replay(lsn: str, timeout: float | None = None, **kwargs):
    """Wait until every host of ``CONVDB_READ_URL`` has replayed ``lsn``; see
    :func:`convdb.replicas.wait_for_replay` (what an erasure calls before it says done)."""
    from .replicas import wait_for_replay as wait

    return wait(lsn, timeout, **kwargs)


@contextlib.contextmanager
def closing(db: peewee.Database) -> Iterator[peewee.Database]:
    try:
        yield db
    finally:
        if not db.is_closed():
            if db.in_transaction():
                db.rollback()
            db.close()
