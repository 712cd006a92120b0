"""convdb's own tests: the shared database fixtures (:mod:`convdb.testing`).

Tests sit in folders by kind: ``unit/`` (pure functions, no database),
``db/`` (real PostgreSQL, in process), ``processes/`` (real worker and
migrator processes, signals, concurrency), ``plugins/`` (real plugin
packages installed with pip), ``docs/`` (the documentation checked against
the code). Helpers: ``support.py`` and ``plugin_helpers.py``; the core's
first migration history, verbatim: ``fixtures/history_0_1``.
"""

import pytest

pytest_plugins = ["convdb.testing"]


@pytest.fixture
def fresh_db_url(server):
    """A second empty database, beside ``empty_db_url``, to compare two schemas."""
    name = server.create()
    yield server.url(name)
    server.drop(name)
