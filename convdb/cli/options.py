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
