"""Fixtures: a real PostgreSQL for every test.

The server is ``TEST_DATABASE_URL`` when set (any database on it: the tests
create their own), else an embedded PostgreSQL started for the session. The
core migrations are applied once to a template database; each test that asks
for ``db`` or ``db_url`` gets a fresh copy (``CREATE DATABASE ... TEMPLATE``),
dropped afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import pytest

from convdb import db as convdb_db
from convdb import embedded
from convdb import migrate as migrate_lib

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


class Server:
    """Creates and drops databases on the test server."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url

    def execute(self, sql: str) -> None:
        conn = psycopg2.connect(self.admin_url)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(sql)
        finally:
            conn.close()

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


def run_cli(
    *args: str, env: dict | None = None, cwd: Path = REPO, timeout: float = 120, check: bool = False
) -> subprocess.CompletedProcess:
    """Run a console script of this environment (``convdb``, ``pw_migrate``)."""
    full_env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    full_env.update(env or {})
    result = subprocess.run(
        [str(BIN / args[0]), *args[1:]],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{args} exited {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result
