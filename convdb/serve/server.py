"""``convdb serve``: the receiver on uvicorn, until SIGTERM.

:func:`run` checks everything it can before the first request (settings,
the database, the migration, the installed adapters), then serves with
uvicorn (uvloop and httptools when installed). SIGTERM (or Ctrl-C) stops
accepting connections, lets the requests in flight finish (each is answered
after its commit), closes the writer and exits 0. With ``workers`` > 1,
uvicorn forks that many processes, each with its own writer; the metrics
are shared through a temporary folder (prometheus_client's multiprocess
mode).
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import tempfile

import psycopg2

from ..config import mask_url
from ..db import resolve_url
from ..exceptions import ConfigError, DatabaseError
from ..pgconnect import (
    connect_hint,
    connect_params,
    describe_connect_error,
    no_writable_host,
    role_of,
)
from .settings import load_serve_settings

GRACEFUL_SHUTDOWN_SECONDS = 30

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "line": {"format": "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"}
    },
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "line"}},
    "loggers": {
        "convdb": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
    },
}


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now (for demos, tests and benchmarks)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def serve_command(port: int) -> list[str]:
    """The command line of ``convdb serve --port PORT`` with this interpreter."""
    return [
        sys.executable,
        "-c",
        "from convdb.cli import main; main()",
        "serve",
        "--port",
        str(port),
    ]


def check_database(url: str, echo=print) -> None:
    """The database answers and has the receiver's tables; else a clear error.

    Hosts that all answer as standbys (a failover under way) are no error:
    the receiver starts, answers 503 until one is promoted, and says why.
    """
    params = connect_params(url, role_of(url))
    try:
        conn = psycopg2.connect(url, **params)
    except psycopg2.Error as exc:
        if not no_writable_host(exc):
            raise DatabaseError(describe_connect_error(url, exc), hint=connect_hint(exc)) from None
        echo(
            f"convdb serve: {describe_connect_error(url, exc)}; answering 503 until a host is "
            "promoted"
        )
        try:
            conn = psycopg2.connect(url, **{**params, "target_session_attrs": "any"})
        except psycopg2.Error as again:
            raise DatabaseError(describe_connect_error(url, again)) from None
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass('webhook_endpoints') IS NOT NULL")
            migrated = cur.fetchone()[0]
    finally:
        conn.close()
    if not migrated:
        raise ConfigError(
            f"the database {mask_url(url)} has no webhook_endpoints table",
            hint="Run `convdb migrate` first.",
        )


def run(
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    *,
    url: str | None = None,
    echo=print,
    app: str = "convdb.serve.app:create_app",
) -> None:
    """Serve the receiver until SIGTERM; returns normally after a clean shutdown.

    ``app`` names the app factory (the benchmarks serve a variant).
    """
    import uvicorn

    from .registry import load

    if not 1 <= workers <= 64:
        raise ConfigError(f"--workers must be between 1 and 64, not {workers}")
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be between 0 and 65535, not {port}")
    settings = load_serve_settings()  # a bad variable stops here, not in every worker
    adapters = load()
    url = url or resolve_url()
    check_database(url, echo)
    # The worker processes build their app from the environment.
    os.environ["DATABASE_URL"] = url
    echo(
        f"convdb serve: http://{host}:{port} on {mask_url(url)}, {workers} worker(s), "
        f"adapters: {', '.join(sorted(adapters))}"
    )
    sys.stdout.flush()
    options = dict(
        host=host,
        port=port,
        factory=True,
        log_config=LOGGING,
        access_log=False,
        proxy_headers=False,  # the receiver reads X-Forwarded-* itself, from trusted proxies
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        # connections past this get 503: slow clients cannot exhaust the process
        limit_concurrency=settings.max_connections,
    )
    # uvicorn re-raises the signal that stopped it once it has shut down;
    # a SIGTERM handler of our own turns that into a normal return (exit 0).
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    if workers == 1:
        uvicorn.run(app, **options)
        return
    with tempfile.TemporaryDirectory(prefix="convdb-metrics-") as folder:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
        uvicorn.run(app, workers=workers, **options)


__all__ = ["check_database", "free_port", "run", "serve_command"]
