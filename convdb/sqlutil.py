"""The old home of :mod:`convdb.migrate.sql`, kept so that applied migration modules
(the core's, and plugins' written before it moved) still import: they must not be
edited, since convdb checks their checksums. New modules import
``from convdb.migrate.sql import run_sql``."""

from .migrate.sql import escape_percent, run_sql

__all__ = ["escape_percent", "run_sql"]
