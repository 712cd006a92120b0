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


_DATABASE_URL_HELP = "PostgreSQL URL (default: DATABASE_URL, .env, or the embedded server)."


def _database_url_option(func):
    return click.option(
        "--database-url",
        envvar="DATABASE_URL",
        default=None,
        show_envvar=True,
        metavar="URL",
        help=_DATABASE_URL_HELP,
    )(func)


@cli.command()
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
@_database_url_option
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
    from .exceptions import MigrationError
    from .migration_report import dry_run_lines

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


@cli.command()
@click.option("--plugin", metavar="NAME", default=None, help="Only this plugin ('core' too).")
@_database_url_option
def status(plugin: str | None, database_url: str | None) -> None:
    """Per source: applied migrations (with when), pending, changed since applied; changes
    nothing. History of plugins no longer installed is listed as not installed."""
    from .migration_report import status_lines

    for line in status_lines(migrate_lib.status(database_url, plugin=plugin)):
        click.echo(line)


@cli.command()
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
    help="Roll back even while plugins that depend on it have applied migrations.",
)
@_database_url_option
def rollback(plugin: str | None, count: int, force: bool, database_url: str | None) -> None:
    """Undo the last COUNT applied migrations of one source, newest first, each in its own
    transaction. Refuses to undo what installed plugins depend on, unless --force."""
    undone = migrate_lib.rollback(database_url, plugin=plugin, count=count, force=force)
    click.echo(f"OK: {len(undone)} migration(s) rolled back")


@cli.command()
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


@cli.command("plugins")
@_database_url_option
def plugins_command(database_url: str | None) -> None:
    """List every plugin found (entry point group convdb.plugins), in migration order, with
    applied/pending counts when DATABASE_URL (or --database-url) is set; then what could not
    be loaded, and why (exit 1)."""
    from . import plugins as plugins_lib
    from .config import load_settings
    from .exceptions import PluginError
    from .migration_report import plugins_table, problem_lines

    scan = plugins_lib.scan()
    found = plugins_lib.with_core(scan.plugins)
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


@cli.command()
@click.argument("event_type")
@click.argument("file", type=click.File("r", encoding="utf-8"), default="-")
@click.option(
    "--key-field",
    metavar="PATH",
    default=None,
    help="Payload field (dotted path, e.g. message_id) used as each event's idempotency key.",
)
@click.option(
    "--delay",
    type=click.FloatRange(min=0),
    default=0,
    metavar="SECONDS",
    help="Make the events due this many seconds from now.",
)
@_database_url_option
def enqueue(
    event_type: str, file, key_field: str | None, delay: float, database_url: str | None
) -> None:
    """Store events of EVENT_TYPE, one JSON payload per line of FILE (default: stdin).

    Every line is checked first: a line that is not a JSON object is reported
    with its line number and nothing from the file is stored. Events whose
    idempotency key is already stored are skipped. Idle workers are woken.
    """
    from .queue import ops

    stored, skipped = ops.enqueue_file(
        event_type, file, name=file.name, key_field=key_field, delay=delay, url=database_url
    )
    click.echo(f"stored {stored} event(s) of type {event_type}; {skipped} duplicate(s) skipped")


@cli.command("queue-worker")
@click.option("--burst", is_flag=True, help="Drain what is due now, then exit 0.")
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Worker threads, each with its own connection.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Events claimed and committed together.",
)
@click.option(
    "--lease",
    type=click.FloatRange(min=1),
    default=60,
    show_default=True,
    metavar="SECONDS",
    help="How long a claimed event stays reserved; a dead worker's events are taken over after it.",
)
@click.option(
    "--max-attempts",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="Attempts before a failing event goes dead.",
)
@click.option(
    "--backoff",
    type=click.FloatRange(min=0),
    default=2,
    show_default=True,
    metavar="SECONDS",
    help="Delay before the first retry; doubles each attempt.",
)
@click.option(
    "--poll-interval",
    type=click.FloatRange(min=0.05),
    default=2,
    show_default=True,
    metavar="SECONDS",
    help="Idle polling, in case a NOTIFY was missed.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress line.")
@_database_url_option
def queue_worker(
    burst, concurrency, batch_size, lease, max_attempts, backoff, poll_interval, quiet, database_url
) -> None:
    """Process queued events: claim, run handlers, record done/retry/dead.

    Runs until SIGTERM or SIGINT (finishes the event in hand, releases the
    rest, exits 0; a second signal exits at once) or, with --burst, until
    nothing is due. Prints a progress line on stderr every 5 s unless -q.
    """
    from .queue import worker

    config = worker.WorkerConfig(
        batch_size=batch_size,
        lease_seconds=lease,
        max_attempts=max_attempts,
        backoff_base=backoff,
        poll_interval=poll_interval,
        concurrency=concurrency,
        burst=burst,
        progress_interval=0 if quiet else 5.0,
    )
    worker.run(database_url, config=config)


@cli.group()
def queue() -> None:
    """Operate the queue: stats, retry-dead, purge."""


@queue.command("stats")
@_database_url_option
def queue_stats(database_url: str | None) -> None:
    """Counts by status and event type, oldest pending age, retry backlog."""
    from .queue import ops

    click.echo(ops.format_stats(ops.stats(database_url)))


@queue.command("retry-dead")
@click.option("--event-type", metavar="TYPE", default=None, help="Only dead events of TYPE.")
@click.option(
    "--id", "ids", type=int, multiple=True, metavar="N", help="Only the dead event N (repeatable)."
)
@_database_url_option
def queue_retry_dead(event_type: str | None, ids: tuple[int, ...], database_url: str | None):
    """Put dead events back to pending with their attempts reset."""
    from .queue import ops

    count = ops.retry_dead(event_type=event_type, ids=ids, url=database_url)
    click.echo(f"{count} dead event(s) back to pending")


@queue.command("purge")
@click.option(
    "--done-older-than",
    "older_than",
    required=True,
    metavar="DURATION",
    help="Age of done events to delete, e.g. 7d, 12h, 30m.",
)
@_database_url_option
def queue_purge(older_than: str, database_url: str | None) -> None:
    """Delete done events processed longer ago than DURATION (dead ones are kept)."""
    from .queue import ops

    count = ops.purge(older_than, url=database_url)
    click.echo(f"purged {count} done event(s) older than {older_than}")


def main() -> None:
    try:
        cli(prog_name="convdb")
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)


__all__ = ["cli", "main", "mask_url"]
