"""Raw SQL in migration modules (the core's and plugins'): :func:`run_sql`.

peewee hands every statement to psycopg2 with a parameter tuple, so a bare
``%`` in SQL text (``RAISE NOTICE '%'``, ``format('%I')``, ``LIKE 'x%'``) is
read as a placeholder. :func:`escape_percent` is the one place that doubles
it; :func:`run_sql` queues a statement on a peewee-migrate migrator with it.
"""

from __future__ import annotations


def escape_percent(sql: str) -> str:
    """``sql`` with every ``%`` doubled, for a driver call that has parameters."""
    return sql.replace("%", "%%")


def run_sql(migrator, sql: str) -> None:
    """Queue raw ``sql`` (no parameters) on a peewee-migrate ``migrator``."""
    migrator.sql(escape_percent(sql))


__all__ = ["escape_percent", "run_sql"]
