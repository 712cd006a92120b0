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

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import phonenumbers
from dotenv import dotenv_values

from .dburl import mask_url, redact, validate_url
from .exceptions import ConfigError

__all__ = [
    "SETTINGS",
    "Setting",
    "Settings",
    "choice",
    "integer",
    "load_settings",
    "mask_url",
    "redact",
    "validate_url",
]

DEFAULT_DATA_DIR = ".convdb"
DEFAULT_PHONE_REGION = "US"


@dataclass(frozen=True)
class Settings:
    """The validated settings; one field per :class:`Setting`."""

    database_url: str | None
    data_dir: Path
    phone_region: str


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


def integer(minimum: int, maximum: int):
    """A parser that accepts a whole number from ``minimum`` to ``maximum``."""

    def parse(text: str) -> int:
        try:
            value = int(text.strip().replace("_", ""))
        except ValueError:
            raise ValueError(f"not a whole number (expected {minimum} to {maximum})") from None
        if not minimum <= value <= maximum:
            raise ValueError(f"out of range (expected {minimum} to {maximum})")
        return value

    return parse


def _database_url(text: str) -> str:
    validate_url(text)
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
    shown = mask_url(text) if setting.field == "database_url" else text
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
