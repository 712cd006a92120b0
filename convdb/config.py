"""Settings, read once from the environment and an optional ``.env`` file.

Variables (all listed in ``.env.example``):

``DATABASE_URL``
    ``postgresql://user:password@host:port/dbname``. Unset: convdb runs on an
    embedded PostgreSQL kept in ``CONVDB_DATA_DIR`` and says so on stderr.
``CONVDB_DATA_DIR``
    Folder of the embedded server's data (default ``.convdb`` in the working
    directory).
``CONVDB_PHONE_REGION``
    Region used to read phone numbers written without a country code
    (default ``US``).

The webhook receiver's variables (``CONVDB_SERVE_*``, ``CONVDB_PUBLIC_URL``,
``CONVDB_TRUSTED_PROXIES``) are read and validated by
:mod:`convdb.serve.settings`.

Real environment variables win over ``.env``; ``.env`` never overrides them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import SplitResult, urlsplit, urlunsplit

from dotenv import dotenv_values

from .exceptions import ConfigError

DEFAULT_DATA_DIR = ".convdb"
DEFAULT_PHONE_REGION = "US"
_SCHEMES = ("postgresql", "postgres")


@dataclass(frozen=True)
class Settings:
    database_url: str | None
    data_dir: Path
    phone_region: str


def environ(env_file: Path | None = None) -> dict[str, str]:
    """The environment as convdb reads it: ``.env`` values, overridden by real variables."""
    values: dict[str, str] = {}
    path = env_file if env_file is not None else Path.cwd() / ".env"
    if path.is_file():
        values.update({k: v for k, v in dotenv_values(path).items() if v is not None})
    values.update(os.environ)
    return values


def load_settings(env_file: Path | None = None) -> Settings:
    """Read the settings from the environment, then ``.env`` in the working directory."""
    env = environ(env_file)
    url = env.get("DATABASE_URL") or None
    if url is not None:
        validate_url(url)
    region = (env.get("CONVDB_PHONE_REGION") or DEFAULT_PHONE_REGION).upper()
    return Settings(
        database_url=url,
        data_dir=Path(env.get("CONVDB_DATA_DIR") or DEFAULT_DATA_DIR).expanduser().resolve(),
        phone_region=region,
    )


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***``; safe to print and log.

    Anything that does not parse is hidden whole rather than risk a secret.
    """
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        user = parts.username or ""
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(SplitResult(parts.scheme, netloc, parts.path, parts.query, ""))
    except ValueError:
        return "<unparseable database URL>"


def validate_url(url: str) -> SplitResult:
    """Check that ``url`` is a usable PostgreSQL URL, or raise :class:`ConfigError`.

    The message never contains the password.
    """
    shown = mask_url(url)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ConfigError(
            f"DATABASE_URL is malformed ({exc}): {shown}",
            hint="Use postgresql://USER:PASSWORD@HOST:PORT/DBNAME.",
        ) from None
    if parts.scheme not in _SCHEMES:
        raise ConfigError(
            f"DATABASE_URL must start with postgresql://, got {parts.scheme or 'no'} scheme: "
            f"{shown}",
            hint="Use postgresql://USER:PASSWORD@HOST:PORT/DBNAME.",
        )
    if not parts.path.strip("/"):
        raise ConfigError(
            f"DATABASE_URL names no database: {shown}",
            hint="Add the database name after the host, e.g. postgresql://localhost/convdb.",
        )
    return parts
