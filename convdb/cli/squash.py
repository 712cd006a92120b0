"""``convdb squash``: a thin shell over :func:`convdb.migrate.squash.squash`."""

from __future__ import annotations

import click

from .render import squash_lines


@click.command()
@click.option(
    "--plugin",
    metavar="NAME",
    default=None,
    help="Squash this plugin's migrations (default: the core's migrations/).",
)
@click.option(
    "--upto",
    required=True,
    metavar="NNN",
    help="The last module to replace (its number or its full name).",
)
def squash(plugin: str | None, upto: str) -> None:
    """Write one module that replaces the modules from the first one not yet squashed up to
    NNN, and runs their code, verbatim and in order.

    It declares them in REPLACES: `convdb migrate` (and `pw_migrate migrate`)
    records it as applied, without running it, on a database that applied
    them all, and runs it instead of them on a fresh one. Refuses a module
    with TRANSACTIONAL = False in the range, an unknown NNN, fewer than two
    modules, and a file that already exists. Touches no database.
    """
    from ..migrate.squash import squash as squash_lib

    for line in squash_lines(squash_lib(upto, plugin=plugin)):
        click.echo(line)
