"""``convdb search`` and ``convdb search-reindex``: thin shells over :mod:`convdb.search`."""

from __future__ import annotations

import json

import click

from .options import database_url_option


@click.command("search")
@click.argument("customer_key")
@click.argument("query")
@click.option(
    "--limit",
    type=int,
    default=20,
    show_default=True,
    metavar="N",
    help="Results per page (1 to 100).",
)
@click.option("--before", metavar="CURSOR", help="The 'next' cursor of the previous page.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def search(customer_key: str, query: str, limit: int, before: str | None, as_json: bool) -> None:
    """Find CUSTOMER_KEY's messages that match QUERY, newest first.

    Words are all required; "two words" is a phrase; -word excludes; or
    between words means either. A phone number matches by its digits
    however it is written (555-2671 finds +1 415 555 2671); an email address
    whole, or @domain. Case and accents are ignored. Reads CONVDB_READ_URL
    when set, else DATABASE_URL.
    """
    from .. import search as search_lib

    page = search_lib.search(customer_key, query, limit=limit, before=before)
    if as_json:
        click.echo(json.dumps(page.to_json(), ensure_ascii=False))
        return
    if not page.results:
        click.echo("no messages match")
    for hit in page.results:
        when = hit.sent_at.strftime("%Y-%m-%d %H:%M:%SZ")
        click.echo(
            f"{when}  {hit.direction:<8}  conversation {hit.conversation_id}  "
            f"message {hit.message_id}\n    {hit.snippet}"
        )
    if page.next:
        click.echo(f"next page: --before {page.next}")


@click.command("search-reindex")
@click.option(
    "--batch",
    type=click.IntRange(100, 100_000),
    default=5000,
    show_default=True,
    help="Messages per committed batch.",
)
@database_url_option
def search_reindex(batch: int, database_url: str | None) -> None:
    """Apply CONVDB_SEARCH_LANGUAGE and rewrite every search document.

    Runs in committed batches while workers go on; until it ends, documents
    written before it keep the previous language's word forms.
    """
    from ..search.language import reindex

    language = reindex(database_url, batch=batch)
    click.echo(f"search documents rewritten for the language {language!r}")
