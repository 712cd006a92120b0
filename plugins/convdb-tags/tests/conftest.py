"""Fixtures for the tags plugin's own tests: a real PostgreSQL, migrated by convdb.

The server is ``TEST_DATABASE_URL`` when set (the tests create and drop their
own databases on it), else an embedded PostgreSQL started for the session.
The plugin must be *installed* (``pip install plugins/convdb-tags``): convdb
finds it through its entry point, exactly as in production.
"""

from __future__ import annotations

import os
import uuid
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import pytest

from convdb import plugins


def pytest_configure(config):
    if not any(f.name == "tags" for f in plugins.discover()):
        pytest.exit(
            "convdb-tags is not installed: run `pip install plugins/convdb-tags` first",
            returncode=2,
        )


def _admin(url: str, sql: str) -> None:
    conn = psycopg2.connect(url)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


@pytest.fixture(scope="session")
def server_url(tmp_path_factory):
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url
        return
    from convdb import embedded

    data_dir = tmp_path_factory.mktemp("embedded")
    try:
        yield embedded.server_url(data_dir)
    finally:
        embedded.stop(data_dir)


@pytest.fixture
def empty_db_url(server_url):
    """A fresh, empty database (dropped afterwards)."""
    name = f"convdb_tags_test_{uuid.uuid4().hex[:12]}"
    _admin(server_url, f'CREATE DATABASE "{name}"')
    yield urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))
    _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
