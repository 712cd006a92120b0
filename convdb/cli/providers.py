"""``convdb providers add|list|remove|adapters``: thin shells over :mod:`convdb.serve.endpoints`."""

from __future__ import annotations

import click

from .options import database_url_option, read_url_option
from .render import format_table


@click.group()
def providers() -> None:
    """Webhook endpoints of providers: register, list, remove."""


@providers.command("add")
@click.argument("customer_key")
@click.argument("provider_name")
@click.option("--kind", required=True, help="sms, mms, email, voice or voicemail.")
@click.option("--adapter", required=True, help="Adapter parsing the requests (e.g. standard).")
@click.option(
    "--secret-ref",
    required=True,
    metavar="REF",
    help="Where the signing secret lives: env:VARIABLE or file:/absolute/path.",
)
@click.option("--customer-name", default=None, help="Name of the customer, when it is created.")
@database_url_option
def add(
    customer_key: str,
    provider_name: str,
    kind: str,
    adapter: str,
    secret_ref: str,
    customer_name: str | None,
    database_url: str | None,
) -> None:
    """Register an endpoint for CUSTOMER_KEY's provider PROVIDER_NAME.

    The customer and the provider are created when missing. The last line
    printed is the path to configure at the sender (after your public base
    URL); it holds a secret token and is shown only this once.
    """
    from ..db import closing, connect
    from ..serve import endpoints

    with closing(connect(database_url, bind=False)) as db:
        new = endpoints.add(
            db,
            customer_key,
            provider_name,
            kind=kind,
            adapter=adapter,
            secret_ref=secret_ref,
            customer_name=customer_name,
        )
    click.echo(
        f"endpoint {new.id}: customer {new.customer_key}, provider {new.provider_name}, "
        f"adapter {new.adapter}; the secret is read from {secret_ref} at each request"
    )
    click.echo("POST path (shown once; prefix it with your public base URL):")
    click.echo(new.path)


@providers.command("list")
@read_url_option
def list_command(database_url: str | None) -> None:
    """List the endpoints (paths are shortened: the full token is never stored).

    Reads from CONVDB_READ_URL when it is set: an endpoint added a moment ago
    shows once the replica has replayed it."""
    from ..db import closing, connect_read
    from ..serve import endpoints
    from ..serve.secrets import shown_ref

    with closing(connect_read(database_url)) as db:
        rows = endpoints.list_endpoints(db)
    if not rows:
        click.echo("no endpoints (add one with `convdb providers add`)")
        return
    headers = ["id", "customer", "provider", "kind", "adapter", "secret ref", "path", "created"]
    click.echo(
        format_table(
            headers,
            [
                (
                    r.id,
                    r.customer_key,
                    r.provider_name,
                    r.kind,
                    r.adapter,
                    shown_ref(r.secret_ref),
                    r.path_hint,
                    r.created_at,
                )
                for r in rows
            ],
        )
    )


@providers.command("remove")
@click.argument("customer_key")
@click.argument("provider_name")
@click.option("--id", "endpoint_id", type=int, default=None, help="Only this endpoint.")
@database_url_option
def remove(
    customer_key: str, provider_name: str, endpoint_id: int | None, database_url: str | None
) -> None:
    """Remove PROVIDER_NAME's endpoints (or one, with --id); the provider row stays."""
    from ..db import closing, connect
    from ..exceptions import ConfigError
    from ..serve import endpoints

    with closing(connect(database_url, bind=False)) as db:
        count = endpoints.remove(db, customer_key, provider_name, endpoint_id)
    if not count:
        raise ConfigError(
            f"no endpoint of customer {customer_key!r}, provider {provider_name!r}"
            + (f" with id {endpoint_id}" if endpoint_id is not None else "")
        )
    click.echo(f"removed {count} endpoint(s); running receivers stop accepting them within seconds")


@providers.command("adapters")
def adapters_command() -> None:
    """List the installed webhook adapters."""
    from ..serve.registry import load

    rows = [(name, type(a).__name__, a.description) for name, a in sorted(load().items())]
    click.echo(format_table(["adapter", "class", "description"], rows))
