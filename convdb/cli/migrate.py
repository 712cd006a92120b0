"""``convdb migrate``, ``status``, ``rollback``, ``create`` and ``plugins``: thin shells over
:mod:`convdb.migrate` and :mod:`convdb.plugins`."""

from __future__ import annotations

import click

from .. import migrate as migrate_lib
from ..exceptions import ConvdbError
from .options import database_url_option


@click.command()
@click.option(
    "--plugin",
    metavar="NAME",
    default=None,
    help="Only this plugin's migrations ('core' for the core's); what it depends "
    "on must be fully migrated.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Run the pending migrations in a transaction that is rolled back, print "
    "every SQL statement, record nothing.",
)
@click.option(
    "--accept-checksum",
    "accept",
    multiple=True,
    metavar="SOURCE/NNN_name",
    help="Accept the edited file of an applied migration (repeatable).",
)
@database_url_option
def migrate(
    plugin: str | None, dry_run: bool, accept: tuple[str, ...], database_url: str | None
) -> None:
    """Apply every pending migration: the core's, then each plugin's in dependency order.

    Runs under a PostgreSQL advisory lock shared with `pw_migrate migrate`, so
    concurrent migrators wait for each other. Refuses to start (and applies
    nothing) when an applied migration's file was edited, an applied file is
    gone, two modules share a number, or a pending module is numbered below
    an applied one. Each migration runs in its own transaction (unless it
    declares TRANSACTIONAL = False): one that fails is rolled back whole, not
    recorded, and the command exits 1 naming it and the database error.
    """
    from ..exceptions import MigrationError
    from .render import dry_run_lines

    if dry_run:
        result = migrate_lib.dry_run(database_url, plugin=plugin, accept=accept)
        for line in dry_run_lines(result):
            click.echo(line)
        if result.failed:
            step = result.failed
            raise MigrationError(
                f"dry run: {step.source}/{step.name} would fail: {step.error}; "
                "everything was rolled back and nothing was recorded",
                source=step.source,
                migration=step.name,
            )
        return
    applied = migrate_lib.run(database_url, plugin=plugin, accept=accept)
    click.echo(f"OK: {len(applied)} migration(s) applied")


@click.command()
@click.option("--plugin", metavar="NAME", default=None, help="Only this plugin ('core' too).")
@database_url_option
def status(plugin: str | None, database_url: str | None) -> None:
    """Per source: applied migrations (with when), pending, changed since applied; changes
    nothing. History of plugins no longer installed is listed as not installed."""
    from .render import status_lines

    for line in status_lines(migrate_lib.status(database_url, plugin=plugin)):
        click.echo(line)


@click.command()
@click.option(
    "--plugin",
    metavar="NAME",
    default=None,
    help="Roll back this plugin's migrations (default: the core's).",
)
@click.option(
    "--count",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="How many of the last applied migrations to undo.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Roll back even when it drops tables or columns that hold rows, and even while "
    "installed plugins that depend on this source have applied migrations.",
)
@database_url_option
def rollback(plugin: str | None, count: int, force: bool, database_url: str | None) -> None:
    """Undo the last COUNT applied migrations of one source, newest first, each in its own
    transaction.

    Unless --force, refuses when the rollback would drop a table or column that
    holds rows: it is tried first in a transaction that is rolled back, and the
    refusal names each table and column with its row count (a module with
    TRANSACTIONAL = False cannot be tried; it is undone unchecked). Also refuses
    to undo what installed plugins depend on, unless --force.
    """
    undone = migrate_lib.rollback(database_url, plugin=plugin, count=count, force=force)
    click.echo(f"OK: {len(undone)} migration(s) rolled back")


@click.command()
@click.argument("name")
@click.option(
    "--plugin",
    metavar="NAME",
    default=None,
    help="Scaffold in this plugin's migrations package (default: the core's migrations/).",
)
def create(name: str, plugin: str | None) -> None:
    """Scaffold a new migration module NAME (core, or --plugin's).

    The module is numbered after the highest existing one and uses the same
    template as `pw_migrate create`.
    """
    path = migrate_lib.create(name, plugin=plugin)
    click.echo(f"created {path}")
    if "site-packages" in path.parts:
        click.echo(
            "warning: that package is installed, not a checkout; scaffold in the "
            "plugin's source (pip install -e <folder>) instead",
            err=True,
        )


@click.command("plugins")
@database_url_option
def plugins_command(database_url: str | None) -> None:
    """List every plugin found (entry point group convdb.plugins), in migration order, with
    applied/pending counts when DATABASE_URL (or --database-url) is set; then what could not
    be loaded, and why (exit 1)."""
    from .. import plugins as plugins_lib
    from ..config import load_settings
    from ..exceptions import PluginError
    from .render import plugins_table, problem_lines

    scan = plugins_lib.scan_with_core()
    found = scan.plugins
    errors = problem_lines(scan.problems)
    try:
        found = plugins_lib.order(found)
    except PluginError as exc:
        errors.append(f"Error: {exc}")
    counts = None
    url = database_url or load_settings().database_url
    if url:
        try:
            sources = [migrate_lib.source_of(f) for f in found if f.plugin.migrations]
            counts = {
                st.source: (len(st.applied), len(st.pending))
                for st in migrate_lib.status(url, sources=sources)
            }
        except ConvdbError as exc:
            click.echo(f"(applied/pending unknown: {exc.message})", err=True)
    click.echo(plugins_table(found, counts))
    for line in errors:
        click.echo(line, err=True)
    if errors:
        raise click.exceptions.Exit(1)
