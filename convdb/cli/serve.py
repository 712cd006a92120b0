"""``convdb serve``: a thin shell over :func:`convdb.serve.server.run`."""

from __future__ import annotations

import click

from .options import database_url_option


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="TCP port."
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Server processes (each with its own group-commit writer).",
)
@database_url_option
def serve(host: str, port: int, workers: int, database_url: str | None) -> None:
    """Receive webhooks: verify, store once in inbound_events, answer 2xx after the commit.

    POST /hooks/TOKEN (the path `convdb providers add` prints), GET /healthz,
    GET /metrics. SIGTERM finishes the requests in flight and exits 0.
    Settings: CONVDB_SERVE_* variables (see docs/serve.md).
    """
    from ..serve import server

    server.run(host, port, workers, url=database_url, echo=lambda line: click.echo(line))
