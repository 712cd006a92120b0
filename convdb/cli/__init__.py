"""The ``convdb`` command: a thin shell over the library, one module per area.

Each command calls one documented library function. Errors are printed as
``Error: <message>`` with their cause chain and exit status 1; ``-v`` adds
the traceback. No message ever contains a database password.
"""

from __future__ import annotations

import sys
import traceback

import click

from ..exceptions import ConvdbError
from . import migrate, misc, providers, queue, serve, squash


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


for command in (
    migrate.migrate,
    migrate.status,
    migrate.rollback,
    migrate.create,
    squash.squash,
    migrate.plugins_command,
    queue.enqueue,
    queue.queue_worker,
    queue.queue,
    misc.demo,
    misc.embedded_stop,
    serve.serve,
    providers.providers,
):
    cli.add_command(command)


def main() -> None:
    try:
        cli(prog_name="convdb")
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)


__all__ = ["cli", "main"]
