"""convdb's own tests: the shared database fixtures (:mod:`convdb.testing`).

Tests sit in folders by kind: ``unit/`` (pure functions, no database),
``db/`` (real PostgreSQL, in process), ``processes/`` (real worker and
migrator processes, signals, concurrency), ``plugins/`` (real plugin
packages installed with pip), ``docs/`` (the documentation checked against
the code). Helpers: ``support.py`` and ``plugin_helpers.py``.
"""

pytest_plugins = ["convdb.testing"]
