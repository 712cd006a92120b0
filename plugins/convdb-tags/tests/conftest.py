"""Fixtures for the tags plugin's own tests: convdb's shared database fixtures.

:mod:`convdb.testing` gives a real PostgreSQL (``TEST_DATABASE_URL``, else an
embedded server started for the session) and fresh databases per test. The
plugin must be *installed* (``pip install plugins/convdb-tags``): convdb
finds it through its entry point, exactly as in production.
"""

from __future__ import annotations

import pytest

from convdb import plugins

pytest_plugins = ["convdb.testing"]


def pytest_configure(config):
    if not any(f.name == "tags" for f in plugins.discover()):
        pytest.exit(
            "convdb-tags is not installed: run `pip install plugins/convdb-tags` first",
            returncode=2,
        )
