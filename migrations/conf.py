"""pw_migrate configuration for the core migrations.

``pw_migrate migrate`` run from the repository root executes this file. The
database comes from ``--database``, else ``DATABASE_URL`` (or ``.env``), else
the embedded PostgreSQL; its connection holds convdb's migration lock, so
``pw_migrate`` and ``convdb migrate`` never run migrations at the same time.
"""

from convdb.migrate.pw_migrate import pw_migrate_database

DATABASE = pw_migrate_database()
