"""The ``convdb`` command: a thin shell over the library.

Each command calls one documented library function. Errors are printed as
``Error: <message>`` with their cause chain and exit status 1; ``-v`` adds
the traceback. No message ever contains a database password.
"""

from __future__ import annotations

import sys
import traceback

import click

from . import migrate as migrate_lib
from .config import mask_url
from .exceptions import ConvdbError


class ConvdbGroup(click.Group):
    """Turns every :class:`ConvdbError` into a short message and exit status 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ConvdbError as exc:
            verbose = (ctx.obj or {}).get("verbose", 0)
            if verbose:
                traceback.print_exc()
            click.echo(f"Error: {exc}", err=True)
            cause = exc.__cause__
            while cause is not None and verbose:
                click.echo(f"  caused by: {' '.join(str(cause).split())}", err=True)
                cause = cause.__cause__
            ctx.exit(1)


@click.group(cls=ConvdbGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="Show tracebacks and causes of errors.")
@click.pass_context
def cli(ctx: click.Context, verbose: int) -> None:
    """convdb: own a PostgreSQL conversation database.

    The database is DATABASE_URL (from the environment or a .env file in the
    working directory); when it is unset, convdb starts (or reuses) an
    embedded PostgreSQL in .convdb/ and says so on stderr.
    """
    ctx.obj = {"verbose": verbose}


@cli.command()
@click.option(
    "--database-url",
    envvar="DATABASE_URL",
    default=None,
    show_envvar=True,
    metavar="URL",
    help="PostgreSQL URL (default: DATABASE_URL, .env, or the embedded server).",
)
def migrate(database_url: str | None) -> None:
    """Apply every pending migration, printing each one applied.

    Runs under a PostgreSQL advisory lock shared with `pw_migrate migrate`, so
    concurrent migrators wait for each other. Each migration runs in its own
    transaction: one that fails is rolled back whole, not recorded, and the
    command exits 1 naming it and the database error.
    """
    applied = migrate_lib.run(database_url)
    click.echo(f"OK: {len(applied)} migration(s) applied")


@cli.command()
@click.option(
    "--database-url",
    envvar="DATABASE_URL",
    default=None,
    metavar="URL",
    help="PostgreSQL URL (default: DATABASE_URL, .env, or the embedded server).",
)
def status(database_url: str | None) -> None:
    """Show applied migrations (with when) and pending ones; changes nothing."""
    for st in migrate_lib.status(database_url):
        click.echo(f"{st.source}: {len(st.applied)} applied, {len(st.pending)} pending")
        for name, at in st.applied:
            when = at.strftime("%Y-%m-%d %H:%M:%S") if at else "?"
            click.echo(f"  [x] {name}  (applied {when} UTC)")
        for name in st.pending:
            click.echo(f"  [ ] {name}")


@cli.command()
@click.option(
    "--count",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="How many of the last applied migrations to undo.",
)
@click.option(
    "--database-url",
    envvar="DATABASE_URL",
    default=None,
    metavar="URL",
    help="PostgreSQL URL (default: DATABASE_URL, .env, or the embedded server).",
)
def rollback(count: int, database_url: str | None) -> None:
    """Undo the last COUNT applied migrations, newest first, each in its own transaction."""
    undone = migrate_lib.rollback(database_url, count=count)
    click.echo(f"OK: {len(undone)} migration(s) rolled back")


@cli.command()
@click.argument("name")
def create(name: str) -> None:
    """Scaffold a new core migration module NAME in migrations/.

    The module is numbered after the highest existing one and uses the same
    template as `pw_migrate create`.
    """
    path = migrate_lib.create(name)
    click.echo(f"created {path}")


@cli.command()
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


@cli.command("embedded-stop")
def embedded_stop() -> None:
    """Stop the embedded PostgreSQL of CONVDB_DATA_DIR (default .convdb)."""
    from . import embedded
    from .config import load_settings

    data_dir = load_settings().data_dir
    if embedded.stop(data_dir):
        click.echo(f"stopped the embedded PostgreSQL in {data_dir}")
    else:
        click.echo(f"no embedded PostgreSQL running in {data_dir}")


def main() -> None:
    try:
        cli(prog_name="convdb")
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)


__all__ = ["cli", "main", "mask_url"]
