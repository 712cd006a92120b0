"""``convdb console``: a thin shell over :func:`convdb.console.server.run`."""

from __future__ import annotations

import click

from .options import database_url_option


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8001, show_default=True, help="TCP port."
)
@database_url_option
def console(host: str, port: int, database_url: str | None) -> None:
    """Serve the operator console: queue, dead events, endpoints, customers' conversations.

    A login is required: the password is read through CONVDB_CONSOLE_PASSWORD_REF
    (env:NAME or file:PATH); without one the console refuses to start. An
    optional CONVDB_CONSOLE_READONLY_PASSWORD_REF opens the pages without any
    action. Pages read on CONVDB_READ_URL when set. SIGTERM exits 0.
    See docs/console.md.
    """
    from ..console import server

    server.run(host, port, url=database_url, echo=lambda line: click.echo(line))
