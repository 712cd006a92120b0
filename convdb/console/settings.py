"""The console's settings and passwords: checked before it serves anything.

The passwords are never in the environment's settings themselves, only where
to read them (``CONVDB_CONSOLE_PASSWORD_REF``, and optionally
``CONVDB_CONSOLE_READONLY_PASSWORD_REF``: ``env:NAME`` or ``file:PATH``, read
as :mod:`convdb.serve.secrets` reads an endpoint's secret). They are read
again at each login, so a rotated password needs no restart; the sessions
already open stay open until they expire.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..config import load_settings
from ..exceptions import ConfigError
from ..serve.secrets import SecretUnavailable, read_secret
from ..serve.settings import ServeSettings

#: Shortest password accepted (in characters).
MIN_PASSWORD = 8


@dataclass(frozen=True)
class ConsoleSettings:
    password_ref: str
    readonly_password_ref: str | None = None
    session_minutes: int = 30
    session_hours: int = 12
    login_attempts: int = 5
    #: Proxies whose X-Forwarded-For / -Proto are believed (CONVDB_TRUSTED_PROXIES).
    proxies: ServeSettings = field(default_factory=ServeSettings)


def load_console_settings(env_file: Path | None = None) -> ConsoleSettings:
    """The console's view of :func:`convdb.config.load_settings`; refuses a missing password."""
    settings = load_settings(env_file)
    if not settings.console_password_ref:
        raise ConfigError(
            "the console needs a password: CONVDB_CONSOLE_PASSWORD_REF is not set",
            hint="Set CONVDB_CONSOLE_PASSWORD_REF=env:VARIABLE (or file:/path) naming where "
            "the password is; convdb console refuses to start without one.",
        )
    console = ConsoleSettings(
        password_ref=settings.console_password_ref,
        readonly_password_ref=settings.console_readonly_password_ref,
        session_minutes=settings.console_session_minutes,
        session_hours=settings.console_session_hours,
        login_attempts=settings.console_login_attempts,
        proxies=ServeSettings(trusted_proxies=settings.trusted_proxies or ()),
    )
    check_passwords(console)
    return console


def read_password(ref: str, variable: str) -> str:
    """The password ``ref`` points at, now; :class:`ConfigError` naming ``variable`` otherwise."""
    try:
        value = read_secret(ref)
    except SecretUnavailable as exc:
        raise ConfigError(f"{variable}: {exc.message}") from None
    except ConfigError as exc:
        raise ConfigError(f"{variable}: {exc.message}", hint=exc.hint) from None
    if len(value) < MIN_PASSWORD:
        raise ConfigError(f"{variable}: the password must be at least {MIN_PASSWORD} characters")
    return value


def passwords(settings: ConsoleSettings) -> dict[str, str]:
    """``{"admin": ..., "readonly": ...}`` (the second only when configured), read now."""
    found = {"admin": read_password(settings.password_ref, "CONVDB_CONSOLE_PASSWORD_REF")}
    if settings.readonly_password_ref:
        found["readonly"] = read_password(
            settings.readonly_password_ref, "CONVDB_CONSOLE_READONLY_PASSWORD_REF"
        )
    return found


def check_passwords(settings: ConsoleSettings) -> None:
    """Both passwords can be read, are long enough, and differ; else :class:`ConfigError`."""
    found = passwords(settings)
    if found.get("readonly") == found["admin"]:
        raise ConfigError(
            "the read-only password is the same as the console password",
            hint="Give CONVDB_CONSOLE_READONLY_PASSWORD_REF another password, or unset it.",
        )


__all__ = [
    "ConsoleSettings",
    "check_passwords",
    "load_console_settings",
    "passwords",
    "read_password",
]
