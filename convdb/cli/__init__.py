"""The ``convdb`` command: a thin shell over the library, one module per area.

Each command calls one documented library function. Every setting is checked
before any command runs (:func:`convdb.config.load_settings`). Errors are
printed as ``Error: <message>`` with their cause chain and exit status 1;
``-v`` adds the traceback. Whatever is printed or logged passes through
:func:`convdb.dburl.redact`: no database password, whatever the URL's form.
"""

from __future__ import annotations

import sys
import traceback

import click

from ..config import load_settings
from ..dburl import redact, redact_log_records
from ..exceptions import ConvdbError
from . import console as console_cli
from . import migrate, misc, providers, queue, serve, squash
from . import privacy as privacy_cli
from . import search as search_cli

_CLICK_FLOW = (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort)


class ConvdbGroup(click.Group):
    """Turns every error into a short message and exit status 1 (a traceback with ``-v``)."""

    def invoke(self, ctx: click.Context):
        # The subcommand's own arguments are only visible here, before the group runs.
        ctx.meta["convdb.help"] = ctx.resilient_parsing or any(
            arg in ("-h", "--help") for arg in ctx.args
        )
        try:
            return super().invoke(ctx)
        except _CLICK_FLOW:
            raise
        except Exception as exc:
            verbose = (ctx.obj or {}).get("verbose", 0)
            if verbose:
                click.echo(redact(traceback.format_exc()).rstrip(), err=True)
            if isinstance(exc, ConvdbError):
                click.echo(redact(f"Error: {exc}"), err=True)
            else:
                detail = " ".join(str(exc).split())
                click.echo(redact(f"Error: unexpected {type(exc).__name__}: {detail}"), err=True)
                if not verbose:
                    click.echo("Run with -v for the traceback.", err=True)
            cause = exc.__cause__
            while cause is not None and verbose:
                click.echo(redact(f"  caused by: {' '.join(str(cause).split())}"), err=True)
                cause = cause.__cause__
            ctx.exit(1)


@click.group(cls=ConvdbGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="Show tracebacks and causes of errors.")
@click.pass_context
def cli(ctx: click.Context, verbose: int) -> None:
    """convdb: own a PostgreSQL conversation database.

    The database is DATABASE_URL (from the environment or a .env file in the
    working directory); when it is unset, convdb starts (or reuses) an
    embedded PostgreSQL in .convdb/ and says so on stderr. Every setting is
    checked first: a bad one stops the command before it touches anything.
    """
    ctx.obj = {"verbose": verbose}
    redact_log_records()
    if not ctx.meta["convdb.help"]:
        ctx.obj["settings"] = load_settings()


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
    # the operator console
    console_cli.console,
):
    cli.add_command(command)

# search (issue 19)
cli.add_command(search_cli.search)
cli.add_command(search_cli.search_reindex)

# privacy and retention (issue 18)
cli.add_command(privacy_cli.erase)
cli.add_command(privacy_cli.export)
cli.add_command(privacy_cli.retention)


def main() -> None:
    try:
        cli(prog_name="convdb")
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)


__all__ = ["cli", "main"]
