"""Receiving endpoints: created, listed and removed (``convdb providers``), and found by token.

::

    from convdb.serve import endpoints

    new = endpoints.add(db, "acme", "billing", kind="email", adapter="standard",
                        secret_ref="env:ACME_BILLING_SECRET")
    new.path        # "/hooks/<token>": configure it at the sender; shown once
    endpoints.list_endpoints(db)
    endpoints.remove(db, "acme", "billing")

Each endpoint is a ``webhook_endpoints`` row tied to a ``providers`` row (the
customer and the provider are created when missing). The token is 32 random
bytes (URL-safe base64); only its SHA-256 is stored. ``secret_ref`` goes to
``providers.credentials_ref``: a reference (``env:NAME``, ``file:PATH``),
never a secret.

:class:`Directory` is the receiver's view: every endpoint, read at once and
kept in memory, refreshed every few seconds, and on a miss at most once a
second, so a new endpoint works at once while random tokens cost the
database nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass

import peewee

from ..exceptions import ConfigError
from ..models import PROVIDER_KINDS, Customer, Provider, WebhookEndpoint
from ..plugins import NAME_RE
from .adapters import Endpoint
from .secrets import parse_ref

PATH_PREFIX = "/hooks/"
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{20,128}$")
MAX_NAME_LENGTH = 200

ENDPOINTS = """
SELECT e.id, e.adapter, p.id, p.kind, p.name, c.id, c.key, c.name, p.credentials_ref,
       e.token_hash
  FROM webhook_endpoints e
  JOIN providers p ON p.id = e.provider_id
  JOIN customers c ON c.id = p.customer_id
"""


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


@dataclass(frozen=True)
class NewEndpoint:
    """A created endpoint; ``path`` holds the token and is never shown again."""

    id: int
    customer_key: str
    provider_name: str
    adapter: str
    path: str


@dataclass(frozen=True)
class Listed:
    id: int
    customer_key: str | None
    provider_name: str
    kind: str
    adapter: str
    secret_ref: str | None
    path_hint: str
    created_at: object


def _check_name(value: str, what: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME_LENGTH:
        raise ConfigError(f"{what} must be 1-{MAX_NAME_LENGTH} characters")
    if any((ch.isspace() and ch != " ") or not ch.isprintable() for ch in value):
        raise ConfigError(f"{what} {value[:40]!r} contains control characters")
    return value.strip()


def add(
    db: peewee.Database,
    customer_key: str,
    provider_name: str,
    *,
    kind: str,
    adapter: str,
    secret_ref: str,
    customer_name: str | None = None,
    known_adapters: Iterable[str] | None = None,
) -> NewEndpoint:
    """Register an endpoint; the customer and provider are created when missing.

    ``known_adapters`` (default: every installed one) guards against a typo
    in ``adapter``. An existing provider gets ``secret_ref`` as its
    ``credentials_ref``. Raises :class:`ConfigError` for any invalid value.
    """
    customer_key = _check_name(customer_key, "the customer key")
    provider_name = _check_name(provider_name, "the provider name")
    if customer_name is not None:
        customer_name = _check_name(customer_name, "the customer name")
    if kind not in PROVIDER_KINDS:
        raise ConfigError(f"kind {kind!r} is not one of {', '.join(PROVIDER_KINDS)}")
    if not NAME_RE.match(adapter or ""):
        raise ConfigError(f"adapter name {adapter!r} is not valid")
    if known_adapters is None:
        from .registry import load

        known_adapters = load()
    known = sorted(known_adapters)
    if adapter not in known:
        raise ConfigError(
            f"no webhook adapter named {adapter!r} is installed",
            hint=f"Installed adapters: {', '.join(known) or 'none'}.",
        )
    parse_ref(secret_ref)
    token = secrets.token_urlsafe(32)
    with db.bind_ctx((Customer, Provider, WebhookEndpoint)), db.atomic():
        customer = Customer.get_or_none(Customer.key == customer_key)
        if customer is None:
            customer = Customer.create(key=customer_key, name=customer_name or customer_key)
        provider = Provider.get_or_none(
            (Provider.customer == customer)
            & (Provider.kind == kind)
            & (Provider.name == provider_name)
        )
        if provider is None:
            provider = Provider.create(
                customer=customer, kind=kind, name=provider_name, credentials_ref=secret_ref
            )
        elif provider.credentials_ref != secret_ref:
            provider.credentials_ref = secret_ref
            provider.save(only=[Provider.credentials_ref])
        row = WebhookEndpoint.create(
            provider=provider, adapter=adapter, token_hash=token_hash(token), token_hint=token[:6]
        )
    return NewEndpoint(row.id, customer_key, provider_name, adapter, PATH_PREFIX + token)


def list_endpoints(db: peewee.Database) -> list[Listed]:
    """Every endpoint, oldest first; the path shows only the token's first characters."""
    rows = db.execute_sql(
        """
        SELECT e.id, c.key, p.name, p.kind, e.adapter, p.credentials_ref, e.token_hint,
               e.created_at
          FROM webhook_endpoints e
          JOIN providers p ON p.id = e.provider_id
          JOIN customers c ON c.id = p.customer_id
         ORDER BY e.id
        """
    ).fetchall()
    return [
        Listed(r[0], r[1], r[2], r[3], r[4], r[5], f"{PATH_PREFIX}{r[6]}...", r[7]) for r in rows
    ]


def remove(
    db: peewee.Database, customer_key: str, provider_name: str, endpoint_id: int | None = None
) -> int:
    """Delete the provider's endpoints (or only ``endpoint_id``); how many went.

    The ``providers`` row stays (its messages refer to it). A running
    receiver stops accepting the URL within its refresh interval.
    """
    sql = """
        DELETE FROM webhook_endpoints e
         USING providers p, customers c
         WHERE p.id = e.provider_id AND c.id = p.customer_id
           AND c.key = %s AND p.name = %s AND (%s::bigint IS NULL OR e.id = %s::bigint)
    """
    with db.atomic():
        return db.execute_sql(sql, (customer_key, provider_name, endpoint_id, endpoint_id)).rowcount


def read_all(conn) -> dict[str, Endpoint]:
    """``{token hash: Endpoint}`` of every endpoint, on a psycopg2 connection."""
    with conn.cursor() as cur:
        cur.execute(ENDPOINTS)
        rows = cur.fetchall()
    return {row[9]: Endpoint(*row[:9]) for row in rows}


class Directory:
    """Endpoints by token, from memory; the table is re-read in the background of requests.

    ``read`` is an async callable returning :func:`read_all`'s mapping (the
    receiver runs it on its reader connection). While the database is down,
    the last table read keeps answering; before any read succeeded, a lookup
    raises the read's error.
    """

    def __init__(self, read, *, refresh: float = 5.0, miss_refresh: float = 1.0) -> None:
        self._read = read
        self._refresh = refresh
        self._miss_refresh = miss_refresh
        self._table: dict[str, Endpoint] | None = None
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()

    async def lookup(self, token: str) -> Endpoint | None:
        """The endpoint of ``token``, or None (also for anything that is not a token)."""
        if not TOKEN_RE.match(token):
            return None
        digest = token_hash(token)
        if time.monotonic() - self._loaded_at > self._refresh:
            await self._reload(self._refresh)
        found = self._table.get(digest) if self._table is not None else None
        if found is None:
            await self._reload(self._miss_refresh)
            found = self._table.get(digest) if self._table is not None else None
        return found

    async def _reload(self, older_than: float) -> None:
        async with self._lock:
            if time.monotonic() - self._loaded_at <= older_than:
                return  # another request reloaded it meanwhile
            try:
                self._table = await self._read()
            except Exception:
                if self._table is None:
                    raise
                # keep serving the last table; try again after the miss interval
                self._loaded_at = time.monotonic() - self._refresh + self._miss_refresh
                return
            self._loaded_at = time.monotonic()


__all__ = ["Directory", "Listed", "NewEndpoint", "add", "list_endpoints", "read_all", "remove"]
