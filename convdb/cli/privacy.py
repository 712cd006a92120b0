"""``convdb erase``, ``convdb export`` and ``convdb retention``: thin shells over
:mod:`convdb.privacy`. Nothing of the person (address, name, text) is printed
or logged, but by ``export``, whose output is the person's data.

Exit status: 0 done (or nothing to erase), 1 an error (nothing changed), and
:data:`REPLICAS_LATE` (3) when the erasure committed but a replica of
``CONVDB_READ_URL`` had not replayed it within ``CONVDB_REPLAY_TIMEOUT``.
"""

from __future__ import annotations

import json

import click

from .options import database_url_option

#: Exit status of an erasure that committed while a replica still shows the person.
REPLICAS_LATE = 3


def _counts(counts: dict[str, int]) -> str:
    shown = {k: v for k, v in sorted(counts.items()) if v}
    return ", ".join(f"{k} {v}" for k, v in shown.items()) or "nothing"


def _report(result, as_json: bool) -> None:
    from ..db import wait_for_replay

    late = None
    if not result.dry_run and result.lsn:
        report = wait_for_replay(result.lsn)
        if not report.done:
            late = report.summary()
    if as_json:
        click.echo(
            json.dumps(
                {
                    "kind": result.kind,
                    "customer_id": result.customer_id,
                    "contact_id": result.contact_id,
                    "dry_run": result.dry_run,
                    "counts": result.counts,
                    "replicas_late": late,
                },
                sort_keys=True,
            )
        )
    else:
        verb = "would erase" if result.dry_run else "erased"
        click.echo(f"{verb}: {_counts(result.counts)}")
    if late:
        click.echo(f"Warning: replicas: {late}", err=True)
        raise SystemExit(REPLICAS_LATE)


def contact_selector(fn):
    """CUSTOMER_KEY, then the person: ADDRESS or ``--contact-id N``."""
    fn = click.option(
        "--contact-id",
        type=click.IntRange(min=1),
        default=None,
        metavar="N",
        help="The contact's id instead of an address.",
    )(fn)
    fn = click.argument("address", required=False)(fn)
    return click.argument("customer_key")(fn)


@click.group()
def erase() -> None:
    """Erase a person or a customer (docs/privacy.md); list past erasures."""


@erase.command("contact")
@contact_selector
@click.option("--dry-run", is_flag=True, help="Print the counts; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@database_url_option
def erase_contact(customer_key, address, contact_id, dry_run, as_json, database_url) -> None:
    """Erase the person ADDRESS (an email address or a phone number) from CUSTOMER_KEY's data.

    Every message they sent, every conversation in which they are the only
    contact, their participation in others, their addresses' links, the
    customer's queue events naming them (any status), and every shared row
    and attachment file nothing else uses afterwards. One transaction; safe
    to run twice or while workers run. Exits 0 when nobody matches; 3 when a
    replica (CONVDB_READ_URL) had not replayed the erasure in time.
    """
    from .. import privacy
    from ..db import closing, connect
    from ..exceptions import ConvdbError

    if (address is None) == (contact_id is None):
        raise ConvdbError("give ADDRESS or --contact-id N (one of them)")
    with closing(connect(database_url, bind=False)) as db:
        try:
            result = privacy.erase_contact(
                db, customer_key, address, contact_id=contact_id, dry_run=dry_run
            )
        except privacy.NothingToErase as exc:
            click.echo(str(exc))
            return
    _report(result, as_json)


@erase.command("customer")
@click.argument("customer_key")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--dry-run", is_flag=True, help="Print the counts; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@database_url_option
def erase_customer(customer_key, yes, dry_run, as_json, database_url) -> None:
    """Erase the customer CUSTOMER_KEY and everything of theirs (asks first, unless --yes)."""
    from .. import privacy
    from ..db import closing, connect

    if not (yes or dry_run):
        click.confirm(
            f"Erase the customer {customer_key!r} and all of its data, for good?", abort=True
        )
    with closing(connect(database_url, bind=False)) as db:
        result = privacy.erase_customer(db, customer_key, dry_run=dry_run)
    _report(result, as_json)


@erase.command("list")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@database_url_option
def erase_list(limit, as_json, database_url) -> None:
    """The audit of past erasures and retention runs, newest first (no personal data)."""
    from ..db import closing, connect

    with closing(connect(database_url, bind=False)) as db:
        rows = db.execute_sql(
            "SELECT id, kind, customer_id, customer_key, contact_id, counts, started_at, "
            "finished_at FROM erasures ORDER BY id DESC LIMIT %s",
            (limit,),
        ).fetchall()
    if not rows and not as_json:
        click.echo("no erasures")
    for r in rows:
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "id": r[0],
                        "kind": r[1],
                        "customer_id": r[2],
                        "customer_key": r[3],
                        "contact_id": r[4],
                        "counts": r[5],
                        "started_at": r[6].isoformat(),
                        "finished_at": r[7].isoformat(),
                    },
                    sort_keys=True,
                )
            )
        else:
            who = f"contact {r[4]} of " if r[4] else ""
            click.echo(
                f"{r[7]:%Y-%m-%d %H:%M:%SZ}  #{r[0]}  {r[1]:<9}  {who}customer {r[2]} "
                f"({r[3]}): {_counts(r[5])}"
            )


@click.group("export")
def export() -> None:
    """Export what convdb holds about a person (docs/privacy.md)."""


@export.command("contact")
@contact_selector
@database_url_option
def export_contact(customer_key, address, contact_id, database_url) -> None:
    """Print one JSON document with everything about ADDRESS for CUSTOMER_KEY
    (format convdb.contact-export, version 1; empty "contacts" when nobody matches)."""
    from .. import privacy
    from ..db import closing, connect
    from ..exceptions import ConvdbError

    if (address is None) == (contact_id is None):
        raise ConvdbError("give ADDRESS or --contact-id N (one of them)")
    with closing(connect(database_url, bind=False)) as db:
        document = privacy.export_contact(db, customer_key, address, contact_id=contact_id)
    click.echo(json.dumps(document, ensure_ascii=False, indent=2))


@click.group()
def retention() -> None:
    """Keep each customer's messages no longer than its policy (docs/privacy.md)."""


@retention.command("set")
@click.argument("customer_key")
@click.option(
    "--days",
    type=click.IntRange(1, 36500),
    default=None,
    metavar="N",
    help="Keep messages N days after they were sent.",
)
@click.option("--none", "keep_all", is_flag=True, help="Keep messages forever (no policy).")
@database_url_option
def retention_set(customer_key, days, keep_all, database_url) -> None:
    """Set CUSTOMER_KEY's retention: --days N, or --none."""
    from .. import privacy
    from ..db import closing, connect
    from ..exceptions import ConvdbError

    if (days is None) == (not keep_all):
        raise ConvdbError("give --days N or --none (one of them)")
    with closing(connect(database_url, bind=False)) as db:
        privacy.set_retention(db, customer_key, None if keep_all else days)
    click.echo(
        f"{customer_key}: messages kept forever"
        if keep_all
        else f"{customer_key}: messages kept {days} day(s) after they were sent"
    )


@retention.command("apply")
@click.option(
    "--batch",
    type=click.IntRange(1, 100_000),
    default=None,
    metavar="N",
    help="Messages per transaction (default: CONVDB_RETENTION_BATCH).",
)
@database_url_option
def retention_apply(batch, database_url) -> None:
    """Delete what the policies no longer keep, in small transactions (the worker
    also runs it every CONVDB_RETENTION_INTERVAL seconds)."""
    from .. import privacy
    from ..db import closing, connect

    with closing(connect(database_url, bind=False)) as db:
        results = privacy.apply_retention(db, batch=batch)
    if not results:
        click.echo("no retention policy set")
    for key, counts in results.items():
        click.echo(f"{key}: deleted {_counts(counts)}")


@retention.command("list")
@database_url_option
def retention_list(database_url) -> None:
    """Every customer's retention policy."""
    from .. import privacy
    from ..db import closing, connect

    with closing(connect(database_url, bind=False)) as db:
        rows = privacy.policies(db)
    if not rows:
        click.echo("no retention policy set")
    for _, key, days in rows:
        click.echo(f"{key}: {days} day(s)")
