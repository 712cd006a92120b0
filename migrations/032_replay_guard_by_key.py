"""The replay guard keyed by the signing key: a nonce is spent once per key, at any endpoint.

020 kept nonces per endpoint (``PRIMARY KEY (endpoint_id, nonce)``). Mailgun
signs only ``timestamp + token``, not the body, so a captured triple was
accepted again, with any body, at every other endpoint holding the same
signing key, another customer's included. From here on a nonce is keyed by
``scope``:

- for a request authenticated with a secret, the hex HMAC-SHA256 of that
  secret under the database's replay key (``webhook_replay_key``), so two
  endpoints or providers holding the same key, through any reference, share
  one scope, while the key itself is never stored;
- for a request authenticated by its path token alone, ``endpoint:<id>``.

``webhook_replay_key``: one row, 32 random bytes, written by the first
receiver that needs it (insert if absent, then read back;
``convdb.serve.replay``). It keeps the signing keys out of the database (a
dump holds an HMAC under a key that is random per database, not a plain hash
that a table of common keys could reverse, and the same signing key in two
databases gives two unrelated scopes). It does not protect against someone
who holds the whole database, key table included: they can test guesses of
a signing key offline, as with any keyed hash stored beside its key; real
signing keys are long and random. Backups carry it, so a restored database
keeps recognising its spent nonces. Deleting the row makes the next
receiver draw a new key (restart the receivers then): nonces spent under the
old one are forgotten, so a request captured within the last
``CONVDB_SERVE_TOLERANCE`` seconds could be replayed once.

Existing rows get the scope ``endpoint:<id>`` and stay spent: the claim
also refuses a nonce that this endpoint spent before this migration. The
purge (``expires_at``) is unchanged. ``endpoint_id`` now only records where
a nonce was spent (set to NULL when that endpoint is removed, so removing
an endpoint never frees its nonces for the others).

Rollback restores 020's shape: rows of a removed endpoint are dropped, and
of a nonce spent under two scopes at one endpoint one row is kept.
"""

from convdb.sqlutil import run_sql

WEBHOOK_REPLAY_KEY = """
CREATE TABLE webhook_replay_key (
    id          BOOLEAN PRIMARY KEY DEFAULT true CHECK (id),
    key         BYTEA NOT NULL CHECK (octet_length(key) = 32),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
)
"""

NONCES_BY_SCOPE = """
ALTER TABLE webhook_nonces
    ADD COLUMN scope TEXT CHECK (length(scope) BETWEEN 1 AND 80)
"""

LEGACY_SCOPES = """
UPDATE webhook_nonces SET scope = 'endpoint:' || endpoint_id
"""

SCOPE_KEY = """
ALTER TABLE webhook_nonces
    ALTER COLUMN scope SET NOT NULL,
    DROP CONSTRAINT webhook_nonces_pkey,
    ADD CONSTRAINT webhook_nonces_pkey PRIMARY KEY (scope, nonce),
    ALTER COLUMN endpoint_id DROP NOT NULL,
    DROP CONSTRAINT webhook_nonces_endpoint_id_fkey,
    ADD CONSTRAINT webhook_nonces_endpoint_id_fkey FOREIGN KEY (endpoint_id)
        REFERENCES webhook_endpoints (id) ON DELETE SET NULL
"""

ENDPOINT_INDEX = """
CREATE INDEX webhook_nonces_endpoint_id_idx ON webhook_nonces (endpoint_id)
"""

# --- rollback ---------------------------------------------------------------------

DROP_ORPHANS = """
DELETE FROM webhook_nonces WHERE endpoint_id IS NULL
"""

DROP_REPEATS = """
DELETE FROM webhook_nonces n
 USING webhook_nonces o
 WHERE o.endpoint_id = n.endpoint_id AND o.nonce = n.nonce AND o.scope < n.scope
"""

ENDPOINT_KEY = """
ALTER TABLE webhook_nonces
    DROP CONSTRAINT webhook_nonces_pkey,
    ADD CONSTRAINT webhook_nonces_pkey PRIMARY KEY (endpoint_id, nonce),
    DROP CONSTRAINT webhook_nonces_endpoint_id_fkey,
    ADD CONSTRAINT webhook_nonces_endpoint_id_fkey FOREIGN KEY (endpoint_id)
        REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    DROP COLUMN scope
"""


def migrate(migrator, database, *, fake=False):
    run_sql(migrator, WEBHOOK_REPLAY_KEY)
    run_sql(migrator, NONCES_BY_SCOPE)
    run_sql(migrator, LEGACY_SCOPES)
    run_sql(migrator, SCOPE_KEY)
    run_sql(migrator, ENDPOINT_INDEX)


def rollback(migrator, database, *, fake=False):
    run_sql(migrator, "DROP INDEX webhook_nonces_endpoint_id_idx")
    run_sql(migrator, DROP_ORPHANS)
    run_sql(migrator, DROP_REPEATS)
    run_sql(migrator, ENDPOINT_KEY)
    run_sql(migrator, "DROP TABLE webhook_replay_key")
