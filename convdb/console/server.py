"""``convdb console``: the operator console on uvicorn, until SIGTERM.

:func:`run` checks the settings and both passwords (refusing to start
without a readable, non-empty one) and the database before it listens, then
serves one process. SIGTERM (or Ctrl-C) lets the requests in flight and the
running bulk action's current batch finish and exits 0.
"""

from __future__ import annotations

import signal
import sys

from ..config import load_settings, mask_url
from ..db import resolve_url
from ..exceptions import ConfigError
from ..serve.server import LOGGING, check_database
from .settings import load_console_settings

GRACEFUL_SHUTDOWN_SECONDS = 10
DEFAULT_PORT = 8001


def run(host: str = "127.0.0.1", port: int = DEFAULT_PORT, *, url: str | None = None, echo=print):
    """Serve the console until SIGTERM; returns normally after a clean shutdown."""
    import uvicorn

    from .app import create_app

    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be between 0 and 65535, not {port}")
    settings = load_console_settings()  # no password, or an unreadable one: stops here
    write_url = url or resolve_url()
    # CONVDB_READ_URL (a replica) takes the pages, as convdb.db.resolve_read_url says.
    read_url = load_settings().read_url or write_url
    check_database(write_url)
    if read_url != write_url:
        check_database(read_url)
    app = create_app(settings, read_url=read_url, write_url=write_url)
    reads = "" if read_url == write_url else f", pages read on {mask_url(read_url)}"
    roles = "operator and read-only logins" if settings.readonly_password_ref else "operator login"
    echo(f"convdb console: http://{host}:{port} on {mask_url(write_url)}{reads}; {roles}")
    sys.stdout.flush()
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=LOGGING,
        access_log=False,  # the console logs its own lines, without query strings
        server_header=False,
        proxy_headers=False,  # the console reads X-Forwarded-* itself, from trusted proxies
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )


__all__ = ["DEFAULT_PORT", "run"]
