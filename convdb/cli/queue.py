"""``convdb enqueue``, ``queue-worker`` and ``queue stats|retry-dead|purge``: thin shells
over :mod:`convdb.queue`."""

from __future__ import annotations

import click

from .options import database_url_option, read_url_option


@click.command()
@click.argument("event_type")
@click.argument("file", type=click.File("rb"), default="-")
@click.option(
    "--key-field",
    metavar="PATH",
    default=None,
    help="Payload field (dotted path, e.g. message_id) whose value, with the event type, "
    "customer and provider, is each event's idempotency key.",
)
@click.option(
    "--delay",
    type=click.FloatRange(min=0),
    default=0,
    metavar="SECONDS",
    help="Make the events due this many seconds from now.",
)
@click.option(
    "--no-validate",
    is_flag=True,
    help="Store the events as they are, held to the limits only: no check that a plugin "
    "handles EVENT_TYPE or that its validator accepts each payload (the worker decides).",
)
@database_url_option
def enqueue(
    event_type: str,
    file,
    key_field: str | None,
    delay: float,
    no_validate: bool,
    database_url: str | None,
) -> None:
    """Store events of EVENT_TYPE, one JSON payload per line of FILE (default: stdin).

    The file is stored in one transaction: a line that is not UTF-8, not a
    JSON object, over a limit (CONVDB_MAX_PAYLOAD_BYTES, ...) or refused by
    the event type's validator (for message.received and message.sent: the
    canonical message checks) is reported with its line number and the field,
    and nothing from the file is stored. An EVENT_TYPE no installed plugin
    handles is refused. Events whose idempotency key is already stored are
    skipped. Idle workers are woken.
    """
    from ..queue import ops

    stored, skipped = ops.enqueue_file(
        event_type,
        file,
        name=file.name,
        key_field=key_field,
        delay=delay,
        url=database_url,
        validate=not no_validate,
    )
    click.echo(f"stored {stored} event(s) of type {event_type}; {skipped} duplicate(s) skipped")


@click.command("queue-worker")
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
    "--batch-bytes",
    type=click.IntRange(min=1024),
    default=None,
    metavar="BYTES",
    help="Payload bytes claimed together: a batch stops at --batch-size events or at this "
    "many bytes of JSON (default 4 MiB).",
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
@database_url_option
def queue_worker(
    burst,
    concurrency,
    batch_size,
    batch_bytes,
    lease,
    max_attempts,
    backoff,
    poll_interval,
    quiet,
    database_url,
) -> None:
    """Process queued events: claim, run handlers, record done/retry/dead.

    Runs until SIGTERM or SIGINT (finishes the event in hand, releases the
    rest, exits 0; a second signal exits at once) or, with --burst, until
    nothing is due. Prints a progress line on stderr every 5 s unless -q.
    """
    from ..queue import worker

    config = worker.WorkerConfig(
        batch_size=batch_size,
        batch_bytes=batch_bytes or worker.BATCH_BYTES,
        lease_seconds=lease,
        max_attempts=max_attempts,
        backoff_base=backoff,
        poll_interval=poll_interval,
        concurrency=concurrency,
        burst=burst,
        progress_interval=0 if quiet else 5.0,
    )
    worker.run(database_url, config=config)


@click.group()
def queue() -> None:
    """Operate the queue: stats, retry-dead, purge."""


@queue.command("stats")
@read_url_option
def queue_stats(database_url: str | None) -> None:
    """Counts by status and event type, oldest pending age, retry backlog.

    Reads from CONVDB_READ_URL when it is set (behind the primary by the
    replica's lag)."""
    from ..queue import ops
    from .render import queue_stats_text

    click.echo(queue_stats_text(ops.stats(database_url)))


@queue.command("retry-dead")
@click.option("--event-type", metavar="TYPE", default=None, help="Only dead events of TYPE.")
@click.option(
    "--id", "ids", type=int, multiple=True, metavar="N", help="Only the dead event N (repeatable)."
)
@database_url_option
def queue_retry_dead(event_type: str | None, ids: tuple[int, ...], database_url: str | None):
    """Put dead events back to pending with their attempts reset."""
    from ..queue import ops

    count = ops.retry_dead(event_type=event_type, ids=ids, url=database_url)
    click.echo(f"{count} dead event(s) back to pending")


@queue.command("purge")
@click.option(
    "--done-older-than",
    "older_than",
    default=None,
    metavar="DURATION",
    help="Age of done events to delete, e.g. 7d, 12h, 30m (default: CONVDB_QUEUE_DONE_DAYS).",
)
@database_url_option
def queue_purge(older_than: str | None, database_url: str | None) -> None:
    """Delete done events processed longer ago than DURATION (dead ones are kept), and
    erased events' keys past their replay window. Their payloads hold personal
    data: the worker also purges them every CONVDB_RETENTION_INTERVAL seconds."""
    from ..config import load_settings
    from ..queue import ops

    if older_than is None:
        older_than = f"{load_settings().queue_done_days}d"
    count = ops.purge(older_than, url=database_url)
    click.echo(f"purged {count} done event(s) older than {older_than}")
