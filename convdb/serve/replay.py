"""The replay guard's scopes: a nonce is spent once per signing key, whatever endpoint holds it.

A :class:`~convdb.serve.adapters.Delivery` may carry a one-time ``nonce``
(Mailgun's ``token``). Mailgun signs ``timestamp + token`` and not the body,
so the guard cannot be per endpoint: a captured triple would be accepted,
with another body, at every other endpoint that holds the same signing key.
The receiver keys each nonce by the secret the request was authenticated
with (:meth:`ReplayScopes.scope`): the hex HMAC-SHA256 of that secret under
the database's replay key. Two endpoints, providers or references
(``env:A``, ``file:/b``) holding one key share one scope; the key itself is
never stored. A request authenticated by its path token alone (``none:``)
has the scope ``endpoint:<id>``.

The replay key is one row of ``webhook_replay_key`` (migration 032): 32
random bytes, drawn by the first receiver that needs it (insert if absent,
then read back, so concurrent receivers agree) and kept in memory after.
Backups carry it. See the migration's docstring for what it protects.

The statements: a group's nonces are claimed (:data:`CLAIM_NONCES`) in the
transaction that stores their events, so a nonce is spent exactly when its
event is stored; a nonce already spent is a retry when the same delivery
(idempotency key) spent it, else a replay (:func:`spent_elsewhere`). Spent
nonces are forgotten after their ``expires_at`` (:data:`PURGE_NONCES`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable, Sequence

import psycopg2

from ..sqlarray import Array

KEY_BYTES = 32

INSERT_KEY = "INSERT INTO webhook_replay_key (key) VALUES (%s) ON CONFLICT (id) DO NOTHING"
SELECT_KEY = "SELECT key FROM webhook_replay_key"

# A nonce is spent once per scope. One that the endpoint spent before
# migration 032 (scope 'endpoint:<id>') stays spent: such a claim inserts
# nothing and goes to NONCE_OWNERS. RETURNING lists the fresh ones with the
# delivery that spent each. When two rows of a group carry one nonce, the first
# in the group's order wins: ORDER BY, since a right anti join (PostgreSQL 16
# and later) does not keep unnest's order, and the winner is read back from
# RETURNING rather than assumed.
CLAIM_NONCES = """
INSERT INTO webhook_nonces (scope, nonce, endpoint_id, idempotency_key, expires_at)
SELECT u.s, u.n, u.e, u.k, now() + make_interval(secs => u.ttl)
  FROM unnest(%(scopes)s::text[], %(nonces)s::text[], %(endpoints)s::bigint[],
              %(keys)s::text[], %(ttls)s::float8[]) WITH ORDINALITY AS u(s, n, e, k, ttl, i)
 WHERE NOT EXISTS (SELECT 1 FROM webhook_nonces o
                    WHERE o.scope = 'endpoint:' || u.e AND o.nonce = u.n AND o.scope <> u.s)
 ORDER BY u.i
ON CONFLICT (scope, nonce) DO NOTHING
RETURNING scope, nonce, idempotency_key
"""

# Who spent a nonce before: the same delivery again (a retry) or another one (a replay).
NONCE_OWNERS = """
SELECT u.s, u.n, o.idempotency_key
  FROM unnest(%(scopes)s::text[], %(nonces)s::text[], %(endpoints)s::bigint[]) AS u(s, n, e)
  JOIN webhook_nonces o ON o.nonce = u.n AND o.scope IN (u.s, 'endpoint:' || u.e)
"""

PURGE_NONCES = """
DELETE FROM webhook_nonces
 WHERE ctid = ANY(ARRAY(SELECT ctid FROM webhook_nonces WHERE expires_at < now() LIMIT 10000))
"""


def read_or_create_key(conn) -> bytes:
    """The database's replay key, drawn now when it has none (on a psycopg2 connection;
    the caller commits)."""
    with conn.cursor() as cur:
        cur.execute(INSERT_KEY, (psycopg2.Binary(secrets.token_bytes(KEY_BYTES)),))
        cur.execute(SELECT_KEY)
        return bytes(cur.fetchone()[0])


def endpoint_scope(endpoint_id: int) -> str:
    """The scope of a nonce at an endpoint authenticated by its path token alone."""
    return f"endpoint:{endpoint_id}"


def key_scope(replay_key: bytes, secret: str) -> str:
    """The scope of a nonce signed with ``secret``: HMAC-SHA256(replay key, secret), hex."""
    return hmac.new(replay_key, secret.encode("utf-8"), hashlib.sha256).hexdigest()


def spent_elsewhere(cur, group: Sequence, order: Sequence[int]) -> list[int]:
    """Claim the nonces of ``group`` (rows with ``scope``, ``nonce``, ``endpoint_id``,
    ``key``, ``nonce_ttl``), in ``order``, on cursor ``cur`` (the transaction is the
    caller's); the indexes of the rows whose nonce another delivery spent."""
    with_nonce = [i for i in order if group[i].nonce]
    cur.execute(
        CLAIM_NONCES,
        {
            "scopes": Array([group[i].scope for i in with_nonce]),
            "nonces": Array([group[i].nonce for i in with_nonce]),
            "endpoints": Array([group[i].endpoint_id for i in with_nonce]),
            "keys": Array([group[i].key for i in with_nonce]),
            "ttls": Array([group[i].nonce_ttl for i in with_nonce]),
        },
    )
    fresh = {tuple(row) for row in cur.fetchall()}
    again = [i for i in with_nonce if (group[i].scope, group[i].nonce, group[i].key) not in fresh]
    if not again:
        return []
    cur.execute(
        NONCE_OWNERS,
        {
            "scopes": Array([group[i].scope for i in again]),
            "nonces": Array([group[i].nonce for i in again]),
            "endpoints": Array([group[i].endpoint_id for i in again]),
        },
    )
    owners: dict[tuple, set[str]] = {}
    for scope, nonce, owner in cur.fetchall():
        owners.setdefault((scope, nonce), set()).add(owner)
    return [i for i in again if owners.get((group[i].scope, group[i].nonce)) != {group[i].key}]


class ReplayScopes:
    """The receiver's scopes: ``run(fn)`` runs ``fn(connection)`` (its reader)."""

    def __init__(self, run: Callable[[Callable], Awaitable[bytes]]) -> None:
        self._run = run
        self._key: bytes | None = None
        self._lock = asyncio.Lock()

    async def scope(self, endpoint_id: int, secret: str | None) -> str:
        """The scope of a nonce at ``endpoint_id``, signed with ``secret`` (None: none).

        Raises :class:`~convdb.serve.pg.Unavailable` when the key must be read
        and the database is away.
        """
        if secret is None:
            return endpoint_scope(endpoint_id)
        if self._key is None:
            async with self._lock:
                if self._key is None:
                    self._key = await self._run(read_or_create_key)
        return key_scope(self._key, secret)


__all__ = [
    "CLAIM_NONCES",
    "NONCE_OWNERS",
    "PURGE_NONCES",
    "ReplayScopes",
    "endpoint_scope",
    "key_scope",
    "read_or_create_key",
    "spent_elsewhere",
]
