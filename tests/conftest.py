"""convdb's own tests: the shared database fixtures (:mod:`convdb.testing`).

Tests sit in folders by kind: ``unit/`` (pure functions, no database),
``db/`` (real PostgreSQL, in process), ``processes/`` (real worker and
migrator processes, signals, concurrency), ``plugins/`` (real plugin
packages installed with pip), ``docs/`` (the documentation checked against
the code). Helpers: ``support.py`` and ``plugin_helpers.py``; the core's
first migration history, verbatim: ``fixtures/history_0_1``.

Property tests that do not set their own number of examples take it from
the hypothesis profile: ``dev`` (50) by default, ``ci`` (200) when
``HYPOTHESIS_PROFILE=ci``, which ``.ci/run`` sets.
"""

import os

import pytest
from hypothesis import settings

pytest_plugins = ["convdb.testing"]

settings.register_profile("ci", max_examples=200)
settings.register_profile("dev", max_examples=50)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture
def fresh_db_url(server):
    """A second empty database, beside ``empty_db_url``, to compare two schemas."""
    name = server.create()
    yield server.url(name)
    server.drop(name)
