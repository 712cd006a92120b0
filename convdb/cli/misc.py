"""``convdb demo`` and ``convdb embedded-stop``."""

from __future__ import annotations

import click


@click.command()
@click.option(
    "--database-url",
    envvar="DATABASE_URL",
    default=None,
    metavar="URL",
    help="PostgreSQL URL (default: DATABASE_URL, .env, or the embedded server).",
)
def demo(database_url: str | None) -> None:
    """Migrate, load a small sample conversation set, print conversation_overview."""
    from . import demo as demo_lib

    demo_lib.run(database_url)


@click.command("embedded-stop")
def embedded_stop() -> None:
    """Stop the embedded PostgreSQL of CONVDB_DATA_DIR (default .convdb)."""
    from .. import embedded
    from ..config import load_settings

    data_dir = load_settings().data_dir
    if embedded.stop(data_dir):
        click.echo(f"stopped the embedded PostgreSQL in {data_dir}")
    else:
        click.echo(f"no embedded PostgreSQL running in {data_dir}")
