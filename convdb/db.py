"""Connections: one database class, UTC on every connection, errors translated once.

``database`` is the proxy every model is bound to; :func:`init` points it at a
real database. :func:`connect` resolves the URL (``DATABASE_URL``, ``.env``, or
the embedded server), opens a :class:`ConvdbDatabase` and turns a refused or
unreachable connection into a one-paragraph :class:`DatabaseError` that never
shows the password.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import peewee
import psycopg2

from .config import Settings, load_settings
from .dburl import mask_url, redact, validate_url
from .exceptions import ConfigError, DatabaseError

database = peewee.DatabaseProxy()


class ConvdbDatabase(peewee.PostgresqlDatabase):
    """A PostgreSQL database opened from a URL; every session works in UTC.

    libpq parses the URL itself (percent-encoded passwords, IPv6 hosts, socket
    folders in ``?host=``), so what works for ``psql`` works here. Only the
    database *name* is kept in ``.database``, so a tool that prints it (like
    ``pw_migrate``) never prints the password.
    """

    def __init__(self, url: str, **kwargs) -> None:
        params = validate_url(url)
        self.url = url
        kwargs.setdefault("application_name", "convdb")
        super().__init__(params["dbname"], dsn=url, **kwargs)

    @property
    def masked_url(self) -> str:
        return mask_url(self.url)

    def _initialize_connection(self, conn) -> None:
        # A naive timestamp is read in the session's time zone: pin it, so
        # every value convdb writes or reads is UTC whatever the server says.
        with conn.cursor() as cur:
            cur.execute("SET TIME ZONE 'UTC'")


def with_database(url: str, name: str) -> str:
    """``url`` with its database name replaced by ``name``."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def describe_connect_error(url: str, exc: BaseException) -> str:
    """One paragraph on why ``url`` could not be reached, password masked."""
    detail = " ".join(str(exc).split()) or exc.__class__.__name__
    return f"cannot connect to {mask_url(url)}: {redact(detail, url)}"


def open_database(url: str, *, db_class: type[ConvdbDatabase] = ConvdbDatabase, **kwargs):
    """Open (and connect) a database at ``url`` or raise :class:`DatabaseError`."""
    try:
        db = db_class(url, **kwargs)
        db.connect()
    except ConfigError:
        raise
    except (peewee.DatabaseError, psycopg2.Error) as exc:
        raise DatabaseError(
            describe_connect_error(url, exc),
            hint="Check DATABASE_URL (host, port, user, password, database name) "
            "and that the server is running.",
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

    Only work that decides no write may read here: a replica can lag.
    """
    settings = settings or load_settings()
    return settings.read_url or resolve_url(settings, announce=announce)


def connect(url: str | None = None, *, bind: bool = True) -> ConvdbDatabase:
    """Open the configured database and, with ``bind``, point the models at it."""
    db = open_database(url or resolve_url())
    if bind:
        init(db)
    return db


def init(db: peewee.Database) -> None:
    """Bind every convdb model (through the ``database`` proxy) to ``db``."""
    database.initialize(db)


@contextlib.contextmanager
def closing(db: peewee.Database) -> Iterator[peewee.Database]:
    try:
        yield db
    finally:
        if not db.is_closed():
            if db.in_transaction():
                db.rollback()
            db.close()
