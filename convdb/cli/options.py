"""Options shared by several commands."""

from __future__ import annotations

import click

DATABASE_URL_HELP = "PostgreSQL URL (default: DATABASE_URL, .env, or the embedded server)."


def database_url_option(func):
    """``--database-url URL`` (also read from ``DATABASE_URL``)."""
    return click.option(
        "--database-url",
        envvar="DATABASE_URL",
        default=None,
        show_envvar=True,
        metavar="URL",
        help=DATABASE_URL_HELP,
    )(func)


READ_URL_HELP = (
    "PostgreSQL URL to read from (default: CONVDB_READ_URL, a replica, else DATABASE_URL, "
    ".env, or the embedded server)."
)


def read_url_option(func):
    """``--database-url URL`` for a command that only reads.

    Given on the command line, that URL is read; otherwise ``CONVDB_READ_URL``
    (a replica) when it is set, else ``DATABASE_URL``: the command gets
    ``None`` then, and :func:`convdb.db.connect_read` decides.
    """

    def explicit_only(ctx: click.Context, param: click.Parameter, value):
        source = ctx.get_parameter_source(param.name)
        return value if source == click.core.ParameterSource.COMMANDLINE else None

    return click.option(
        "--database-url",
        default=None,
        metavar="URL",
        callback=explicit_only,
        help=READ_URL_HELP,
    )(func)
