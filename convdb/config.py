"""Settings: every one declared once, read from the environment and ``.env``, checked at once.

Each setting is a :class:`Setting` in :data:`SETTINGS` (its variable, its field
of :class:`Settings`, its default, a parser that validates it, one line of
documentation). :func:`load_settings` reads all of them and raises one
:class:`~convdb.exceptions.ConfigError` naming every bad one and what it
accepts; the ``convdb`` command and ``pw_migrate`` (through
``migrations/conf.py``) call it before they do anything else, so a bad setting
stops a command before it touches a database or a file.

Adding a setting: a field on :class:`Settings`, a :class:`Setting` in
:data:`SETTINGS` with a parser (:func:`choice`, :func:`integer`, or any
function that returns the value or raises ``ValueError`` with a message for
operators), a line in ``.env.example`` and a row in ``docs/operations.md``
(a test checks both)::

    Setting("CONVDB_MAX_PAYLOAD_BYTES", "max_payload_bytes", "1048576",
            integer(1, 64 * 2**20), "largest payload accepted, in bytes")

Real environment variables win over ``.env``; an empty value counts as unset.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import phonenumbers
from dotenv import dotenv_values

from .dburl import mask_url, redact, validate_url
from .exceptions import ConfigError

__all__ = [
    "SETTINGS",
    "Setting",
    "Settings",
    "base_url",
    "choice",
    "environ",
    "integer",
    "load_settings",
    "mask_url",
    "networks",
    "number",
    "redact",
    "validate_url",
]

DEFAULT_DATA_DIR = ".convdb"
DEFAULT_PHONE_REGION = "US"
# Queue limits (convdb.queue.limits). A key of 600 characters (at most 2,400
# bytes) still fits the unique index; the JSON parser recurses once per level,
# so depth stays far below Python's recursion limit.
DEFAULT_MAX_PAYLOAD_BYTES = 1_048_576
DEFAULT_MAX_PAYLOAD_DEPTH = 64
DEFAULT_MAX_KEY_LENGTH = 512
DEFAULT_MAX_EVENT_TYPE_LENGTH = 128
# Search: "simple" (no stemming) or a language whose Snowball stemmer both
# PostgreSQL 15 and 18 ship (dictionary <language>_stem).
_SEARCH_LANGUAGES = (
    "simple arabic armenian basque catalan danish dutch english finnish french german "
    "greek hindi hungarian indonesian irish italian lithuanian nepali norwegian "
    "portuguese romanian russian serbian spanish swedish tamil turkish yiddish"
)
SEARCH_LANGUAGES = tuple(_SEARCH_LANGUAGES.split())


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Settings:
    """The validated settings; one field per :class:`Setting`."""

    database_url: str | None
    read_url: str | None
    data_dir: Path
    phone_region: str
    # the webhook receiver's (convdb.serve.settings.ServeSettings is its view of them)
    serve_max_body: int
    serve_max_headers: int
    serve_tolerance: float
    serve_commit_timeout: float
    serve_retry_after: int
    serve_max_group: int
    serve_refresh: float
    public_url: str | None
    trusted_proxies: tuple[Network, ...] | None
    # the receiver's bounds on slow or large requests (issue 16)
    serve_max_form_body: int
    serve_body_timeout: float
    serve_max_connections: int
    # the attachment store's (convdb.attachments.AttachmentSettings is its view of them)
    attachment_store: str
    attachment_dir: Path | None
    attachment_max_bytes: int
    attachment_max_message: int
    # the queue's limits (convdb.queue.limits.Limits is its view of them)
    max_payload_bytes: int
    max_payload_depth: int
    max_key_length: int
    max_event_type_length: int
    # every connection (convdb.pgconnect.ConnectOptions is their view), and the replicas
    db_connect_timeout: int
    db_keepalives_idle: int
    db_keepalives_interval: int
    db_keepalives_count: int
    db_tcp_user_timeout: float
    read_max_lag: float
    replay_timeout: float
    # search (convdb.search)
    search_language: str
    search_timeout: float
    search_max_query: int
    search_max_terms: int
    status_early_days: float
    # the operator console's (convdb.console.settings.ConsoleSettings is its view of them)
    console_password_ref: str | None = None
    console_readonly_password_ref: str | None = None
    console_session_minutes: int = 30
    console_session_hours: int = 12
    console_login_attempts: int = 5
    # privacy and retention (convdb.privacy)
    queue_done_days: int = 7
    erasure_replay_days: int = 30
    retention_interval: int = 3600
    retention_batch: int = 1000


@dataclass(frozen=True)
class Setting:
    """One environment variable: where it goes, its default, how it is checked."""

    variable: str
    field: str
    default: str | None
    parse: Callable[[str], Any]
    doc: str


def choice(choices: Iterable[str], *, fold: Callable[[str], str] = str.upper):
    """A parser that accepts one of ``choices`` (compared after ``fold``)."""
    allowed = sorted(choices)

    def parse(text: str) -> str:
        value = fold(text.strip())
        if value not in allowed:
            raise ValueError(f"not one of the valid choices: {', '.join(allowed)}")
        return value

    return parse


def number(minimum: float, maximum: float, *, kind: type = float):
    """A parser that accepts a number (of ``kind``) from ``minimum`` to ``maximum``."""
    what = "a whole number" if kind is int else "a number"
    # Whole numbers in full (268435455, not 2.68435e+08).
    expected = f"{minimum:d} to {maximum:d}" if kind is int else f"{minimum:g} to {maximum:g}"

    def parse(text: str) -> Any:
        try:
            value = kind(text.strip().replace("_", ""))
        except ValueError:
            raise ValueError(f"not {what} (expected {expected})") from None
        if not minimum <= value <= maximum:
            raise ValueError(f"out of range (expected {expected})")
        return value

    return parse


def integer(minimum: int, maximum: int):
    """A parser that accepts a whole number from ``minimum`` to ``maximum``."""
    return number(minimum, maximum, kind=int)


def base_url(text: str) -> str:
    """An http(s) URL without query, fragment or credentials; returned without a final ``/``."""
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ValueError(f"not a URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be http(s)://HOST[:PORT][/PREFIX]")
    if parts.query or parts.fragment or parts.username or parts.password or len(text) > 2000:
        raise ValueError("must not hold a query, fragment or credentials")
    return text.rstrip("/")


def networks(text: str) -> tuple[Network, ...]:
    """Addresses or CIDR networks, comma-separated (``10.0.0.5,192.168.0.0/24``)."""
    found = []
    for item in (i.strip() for i in text.split(",")):
        if item:
            try:
                found.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"{item[:60]!r} is not an address or network") from None
    return tuple(found)


def _database_url(text: str) -> str:
    validate_url(text)
    return text


def _read_url(text: str) -> str:
    validate_url(text, "CONVDB_READ_URL")
    return text


def _store(text: str) -> str:
    # Only the form here: loading the named class is the store's own business.
    text = text.strip()
    module, colon, attr = text.partition(":")
    if text != "local" and not (colon and module and attr.isidentifier()):
        raise ValueError("neither 'local' nor module:attr naming an AttachmentStore")
    return text


def _directory(text: str) -> Path:
    path = Path(text).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} exists and is not a folder")
    return path


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "DATABASE_URL",
        "database_url",
        None,
        _database_url,
        "postgresql://USER:PASSWORD@HOST:PORT/DBNAME; unset: the embedded PostgreSQL",
    ),
    Setting(
        "CONVDB_READ_URL",
        "read_url",
        None,
        _read_url,
        "a replica for read-only work (search, console, reports); unset: DATABASE_URL",
    ),
    Setting(
        "CONVDB_DATA_DIR",
        "data_dir",
        DEFAULT_DATA_DIR,
        _directory,
        "folder of the embedded PostgreSQL's data",
    ),
    Setting(
        "CONVDB_PHONE_REGION",
        "phone_region",
        DEFAULT_PHONE_REGION,
        choice(phonenumbers.SUPPORTED_REGIONS),
        "region (ISO 3166 code) for phone numbers written without a country code",
    ),
    Setting(
        "CONVDB_SERVE_MAX_BODY",
        "serve_max_body",
        "1048576",
        integer(1024, 1024**3),
        "receiver: largest body in bytes (413 above; an adapter may set its own)",
    ),
    Setting(
        "CONVDB_SERVE_MAX_HEADERS",
        "serve_max_headers",
        "16384",
        integer(1024, 1024**2),
        "receiver: largest total of header bytes (431 above)",
    ),
    Setting(
        "CONVDB_SERVE_TOLERANCE",
        "serve_tolerance",
        "300",
        number(1, 86_400),
        "receiver: seconds a signed timestamp may be off",
    ),
    Setting(
        "CONVDB_SERVE_COMMIT_TIMEOUT",
        "serve_commit_timeout",
        "10",
        number(0.1, 300),
        "receiver: seconds a request waits for its commit (503 after)",
    ),
    Setting(
        "CONVDB_SERVE_RETRY_AFTER",
        "serve_retry_after",
        "5",
        integer(1, 3600),
        "receiver: the Retry-After seconds of a 503",
    ),
    Setting(
        "CONVDB_SERVE_MAX_GROUP",
        "serve_max_group",
        "1000",
        integer(1, 10_000),
        "receiver: most rows in one group commit",
    ),
    Setting(
        "CONVDB_SERVE_REFRESH",
        "serve_refresh",
        "5",
        number(0.1, 3600),
        "receiver: seconds between re-reads of the endpoints",
    ),
    Setting(
        "CONVDB_PUBLIC_URL",
        "public_url",
        None,
        base_url,
        "receiver: its root URL as senders call it (https://hooks.example.com)",
    ),
    Setting(
        "CONVDB_TRUSTED_PROXIES",
        "trusted_proxies",
        None,
        networks,
        "receiver: addresses or networks whose X-Forwarded-* headers are believed",
    ),
    Setting(
        "CONVDB_SERVE_MAX_FORM_BODY",
        "serve_max_form_body",
        str(4 * 2**20),
        integer(1024, 1024**3),
        "receiver: largest form-encoded body in bytes (413 above), whatever the adapter's limit",
    ),
    Setting(
        "CONVDB_SERVE_BODY_TIMEOUT",
        "serve_body_timeout",
        "60",
        number(0.1, 3600),
        "receiver: seconds a request's whole body may take to arrive (408 after)",
    ),
    Setting(
        "CONVDB_SERVE_MAX_CONNECTIONS",
        "serve_max_connections",
        "1000",
        integer(1, 1_000_000),
        "receiver: most open connections per server process (503 above)",
    ),
    Setting(
        "CONVDB_ATTACHMENT_STORE",
        "attachment_store",
        "local",
        _store,
        "attachments: 'local', or module:attr naming an AttachmentStore",
    ),
    Setting(
        "CONVDB_ATTACHMENT_DIR",
        "attachment_dir",
        None,
        _directory,
        "attachments: folder of the local store (unset: CONVDB_DATA_DIR/attachments)",
    ),
    Setting(
        "CONVDB_ATTACHMENT_MAX_BYTES",
        "attachment_max_bytes",
        str(25 * 2**20),
        integer(1024, 2**40),
        "attachments: largest attachment in bytes (413 above)",
    ),
    Setting(
        "CONVDB_ATTACHMENT_MAX_MESSAGE",
        "attachment_max_message",
        str(50 * 2**20),
        integer(1024, 2**40),
        "attachments: largest webhook body that carries attachments, in bytes",
    ),
    Setting(
        "CONVDB_MAX_PAYLOAD_BYTES",
        "max_payload_bytes",
        str(DEFAULT_MAX_PAYLOAD_BYTES),
        integer(1024, 2**28 - 1),
        "queue: largest event payload, in bytes of UTF-8 JSON",
    ),
    Setting(
        "CONVDB_MAX_PAYLOAD_DEPTH",
        "max_payload_depth",
        str(DEFAULT_MAX_PAYLOAD_DEPTH),
        integer(2, 500),
        "queue: deepest nesting of objects and arrays in a payload",
    ),
    Setting(
        "CONVDB_MAX_KEY_LENGTH",
        "max_key_length",
        str(DEFAULT_MAX_KEY_LENGTH),
        integer(16, 600),
        "queue: longest idempotency key, in characters",
    ),
    Setting(
        "CONVDB_MAX_EVENT_TYPE_LENGTH",
        "max_event_type_length",
        str(DEFAULT_MAX_EVENT_TYPE_LENGTH),
        integer(16, 1000),
        "queue: longest event type, in characters",
    ),
    Setting(
        "CONVDB_DB_CONNECT_TIMEOUT",
        "db_connect_timeout",
        "5",
        integer(2, 600),
        "connections: seconds to reach one host (libpq connect_timeout)",
    ),
    Setting(
        "CONVDB_DB_KEEPALIVES_IDLE",
        "db_keepalives_idle",
        "30",
        integer(0, 7200),
        "connections: idle seconds before the first TCP keepalive (0: none)",
    ),
    Setting(
        "CONVDB_DB_KEEPALIVES_INTERVAL",
        "db_keepalives_interval",
        "10",
        integer(1, 600),
        "connections: seconds between unanswered TCP keepalives",
    ),
    Setting(
        "CONVDB_DB_KEEPALIVES_COUNT",
        "db_keepalives_count",
        "3",
        integer(1, 100),
        "connections: unanswered TCP keepalives before the connection is dropped",
    ),
    Setting(
        "CONVDB_DB_TCP_USER_TIMEOUT",
        "db_tcp_user_timeout",
        "30",
        number(0, 3600),
        "connections: seconds sent data may stay unacknowledged before the "
        "connection is dropped (0: the system's)",
    ),
    Setting(
        "CONVDB_READ_MAX_LAG",
        "read_max_lag",
        "30",
        number(0.1, 86_400),
        "replicas: seconds of replay lag above which /healthz says degraded",
    ),
    Setting(
        "CONVDB_REPLAY_TIMEOUT",
        "replay_timeout",
        "60",
        number(0, 3600),
        "replicas: seconds an erasure waits for every replica to replay it",
    ),
    Setting(
        "CONVDB_SEARCH_LANGUAGE",
        "search_language",
        "simple",
        choice(SEARCH_LANGUAGES, fold=str.lower),
        "search: 'simple' (no stemming) or a language to stem words in; "
        "`convdb search-reindex` applies it",
    ),
    Setting(
        "CONVDB_SEARCH_TIMEOUT",
        "search_timeout",
        "5",
        number(0.1, 300),
        "search: seconds a search may run before it is stopped",
    ),
    Setting(
        "CONVDB_SEARCH_MAX_QUERY",
        "search_max_query",
        "1000",
        integer(10, 5000),
        "search: longest query, in characters (longer ones are refused)",
    ),
    Setting(
        "CONVDB_SEARCH_MAX_TERMS",
        "search_max_terms",
        "50",
        integer(1, 500),
        "search: most terms (words) in a query (more are refused)",
    ),
    Setting(
        "CONVDB_STATUS_EARLY_DAYS",
        "status_early_days",
        "7",
        number(0.01, 3650),
        "delivery status: days a report for a message not stored yet waits for it, "
        "then it is purged",
    ),
)


def _secret_ref(text: str) -> str:
    # The form only; convdb.serve.secrets reads it (and says what is wrong).
    text = text.strip()
    if not text.startswith(("env:", "file:")) or len(text) > 1024:
        raise ValueError("not a secret reference: use env:VARIABLE or file:/absolute/path")
    return text


# The operator console's (convdb console).
SETTINGS += (
    Setting(
        "CONVDB_CONSOLE_PASSWORD_REF",
        "console_password_ref",
        None,
        _secret_ref,
        "console: where its password is (env:NAME or file:PATH); required by convdb console",
    ),
    Setting(
        "CONVDB_CONSOLE_READONLY_PASSWORD_REF",
        "console_readonly_password_ref",
        None,
        _secret_ref,
        "console: where an optional read-only password is (pages without any action)",
    ),
    Setting(
        "CONVDB_CONSOLE_SESSION_MINUTES",
        "console_session_minutes",
        "30",
        integer(1, 24 * 60),
        "console: a session ends after this many minutes without a request",
    ),
    Setting(
        "CONVDB_CONSOLE_SESSION_HOURS",
        "console_session_hours",
        "12",
        integer(1, 24 * 7),
        "console: a session ends this many hours after its login, active or not",
    ),
    Setting(
        "CONVDB_CONSOLE_LOGIN_ATTEMPTS",
        "console_login_attempts",
        "5",
        integer(1, 1000),
        "console: failed logins allowed per client address per 5 minutes (429 after)",
    ),
    Setting(
        "CONVDB_QUEUE_DONE_DAYS",
        "queue_done_days",
        "7",
        integer(1, 3650),
        "done queue events (their payloads hold personal data) are purged after this many days",
    ),
    Setting(
        "CONVDB_ERASURE_REPLAY_DAYS",
        "erasure_replay_days",
        "30",
        integer(1, 3650),
        "days an erased event's key (hashed) is kept, so a provider's redelivery is dropped",
    ),
    Setting(
        "CONVDB_RETENTION_INTERVAL",
        "retention_interval",
        "3600",
        integer(0, 7 * 86400),
        "seconds between the worker's retention runs and done-event purges; 0: never",
    ),
    Setting(
        "CONVDB_RETENTION_BATCH",
        "retention_batch",
        "1000",
        integer(1, 100_000),
        "messages deleted per retention transaction",
    ),
)


def environ(env_file: Path | None = None) -> dict[str, str]:
    """The environment as convdb reads it: ``.env`` values, overridden by real variables."""
    values: dict[str, str] = {}
    path = env_file if env_file is not None else Path.cwd() / ".env"
    if path.is_file():
        values.update({k: v for k, v in dotenv_values(path).items() if v is not None})
    values.update(os.environ)
    return values


def _shown(setting: Setting, text: str) -> str:
    shown = mask_url(text) if setting.field in ("database_url", "read_url") else text
    return repr(shown if len(shown) <= 80 else shown[:80] + "…")


def parse_settings(env: Mapping[str, str]) -> Settings:
    """:class:`Settings` from ``env`` (variable -> text); one error naming every bad setting."""
    values: dict[str, Any] = {}
    problems: list[tuple[str, str | None]] = []
    for setting in SETTINGS:
        text = env.get(setting.variable) or setting.default
        try:
            values[setting.field] = None if text is None else setting.parse(text)
        except ConfigError as exc:
            problems.append((exc.message, exc.hint))
        except ValueError as exc:
            problems.append(
                (f"{setting.variable}={_shown(setting, text)}: {redact(str(exc))}", None)
            )
    if problems:
        messages = [message for message, _ in problems]
        hints = dict.fromkeys(hint for _, hint in problems if hint)
        raise ConfigError(
            messages[0] if len(messages) == 1 else "invalid settings:\n  " + "\n  ".join(messages),
            hint=" ".join([*hints, "Fix the environment or .env (see .env.example); nothing ran."]),
        )
    return Settings(**values)


def load_settings(env_file: Path | None = None) -> Settings:
    """Read and check every setting: the environment, then ``.env`` in the working directory."""
    return parse_settings(environ(env_file))
