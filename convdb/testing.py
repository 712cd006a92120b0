"""pytest fixtures for code that runs on a convdb database: convdb's own tests and plugins'.

Load them from a ``conftest.py``::

    pytest_plugins = ["convdb.testing"]

The server is ``TEST_DATABASE_URL`` when set (any database on it: the
fixtures create their own and drop them), else an embedded PostgreSQL
started for the test session. Every installed plugin's migrations (the
core's included) are applied once to a template database; each test that
asks for ``db`` or ``db_url`` gets a fresh copy (``CREATE DATABASE ...
TEMPLATE``), dropped afterwards.

Fixtures: ``server`` (session: a :class:`Server`), ``template_db``
(session: the migrated template's name), ``db_url`` (a fresh migrated
database), ``empty_db_url`` (a fresh empty one), ``db`` (a connected
:class:`~convdb.db.ConvdbDatabase` on a fresh migrated copy, the models bound
to it). Helpers: :func:`query` and :func:`scalar` read through their own
psycopg2 connection, independent of the code under test.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

from . import db as convdb_db
from . import embedded
from . import migrate as migrate_lib
from .db import with_database

__all__ = ["Server", "query", "scalar", "with_database"]


def query(url: str, sql: str, params=None) -> list[tuple]:
    """The rows of ``sql`` (autocommit, a connection of its own)."""
    conn = psycopg2.connect(url)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def scalar(url: str, sql: str, params=None):
    """The first column of the first row of ``sql``."""
    return query(url, sql, params)[0][0]


class Server:
    """Creates and drops databases on the test server."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url

    def execute(self, sql: str) -> None:
        query(self.admin_url, sql)

    def create(self, template: str | None = None, prefix: str = "convdb_test") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        self.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        return name

    def drop(self, name: str) -> None:
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def url(self, name: str) -> str:
        return with_database(self.admin_url, name)


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield Server(url)
        return
    # Not under pytest's basetemp: pytest prunes old basetemp folders, and a
    # concurrent pytest run would delete the data of a running server.
    data_dir = Path(tempfile.mkdtemp(prefix="convdb-test-pg-"))
    try:
        yield Server(embedded.server_url(data_dir))
    finally:
        embedded.stop(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def template_db(server: Server) -> Iterator[str]:
    name = server.create(prefix="convdb_template")
    migrate_lib.run(server.url(name), echo=lambda _: None)
    yield name
    server.drop(name)


@pytest.fixture
def db_url(server: Server, template_db: str) -> Iterator[str]:
    """URL of a fresh, fully migrated database."""
    name = server.create(template=template_db)
    yield server.url(name)
    server.drop(name)


@pytest.fixture
def empty_db_url(server: Server) -> Iterator[str]:
    """URL of a fresh database with nothing in it."""
    name = server.create()
    yield server.url(name)
    server.drop(name)


@pytest.fixture
def db(db_url: str) -> Iterator[convdb_db.ConvdbDatabase]:
    """A connected database on a fresh migrated copy; the models are bound to it."""
    database = convdb_db.open_database(db_url)
    convdb_db.init(database)
    try:
        yield database
    finally:
        if not database.is_closed():
            if database.in_transaction():
                database.rollback()
            database.close()
