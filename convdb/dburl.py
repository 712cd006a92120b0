"""Database URLs: checked before libpq sees them, and never a password in any text.

``DATABASE_URL`` must be a ``postgresql://`` (or ``postgres://``) URL::

    postgresql://USER:PASSWORD@HOST:PORT/DBNAME?sslmode=require

:func:`validate_url` reads it with libpq's own parser (so what ``psql``
accepts works: percent-encoding, IPv6 hosts, several hosts, socket folders in
``?host=``) after refusing what libpq would misread: a ``/``, ``?``, ``#`` or
``@`` left unencoded in the user name or password. Its errors are
:class:`~convdb.exceptions.ConfigError` messages written for operators.

A URL may name several hosts, as libpq allows
(``postgresql://u:pw@h1:5432,h2:5433/db?target_session_attrs=read-write``):
:func:`validate_url` checks that the ports match the hosts and that
``target_session_attrs`` is a value libpq knows, and :func:`hosts` lists
them (what a replica check or :func:`convdb.replicas.wait_for_replay` visits
one by one).

Every string that is or may be a secret in a URL (the password in the user
info, ``?password=`` and ``?sslpassword=``, the keyword form ``password=...``,
decoded and encoded, and what libpq reads as the password) is found by
:func:`secrets_in`. :func:`mask_url` shows a URL with each of them replaced by
``***``; :func:`redact` does the same to any text, for every URL seen by
:func:`validate_url` in this process (the CLI passes its error messages and
tracebacks through it, and :func:`redact_log_records` its log records).
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, field
from urllib.parse import unquote

from psycopg2.extensions import parse_dsn

from .exceptions import ConfigError

SCHEMES = ("postgresql://", "postgres://")
MASK = "***"
_HINT = "Use postgresql://USER:PASSWORD@HOST:PORT/DBNAME."
_ANY_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
# libpq parameters that hold a secret, in a URI query or in keyword form.
_SECRET_PARAMETER = re.compile(
    r"(?:^|[?&\s])(?:ssl)?password\s*=\s*('(?:[^'\\]|\\.)*'|[^&\s]*)", re.IGNORECASE
)
# Secrets this long are masked wherever they appear, shorter ones as whole words.
_ANYWHERE = 8
# Where libpq (or a reader) might cut a password written unencoded.
_DELIMITERS = re.compile(r"[/?#@&=:]")

# More hosts than this in one URL is a mistake, not a cluster.
MAX_HOSTS = 32
# libpq's values (target_session_attrs, PostgreSQL 14 and later).
SESSION_ATTRS = ("any", "read-write", "read-only", "primary", "standby", "prefer-standby")
DEFAULT_PORT = "5432"

_seen: set[str] = set()
_seen_lock = threading.Lock()


def _user_info_passwords(url: str) -> set[str]:
    """The password as read up to the last ``@`` and up to the first, with its pieces."""
    match = _ANY_SCHEME.match(url)
    rest = url[match.end() :] if match else url
    found = set()
    for at in {rest.find("@"), rest.rfind("@")} - {-1}:
        _, colon, password = rest[:at].partition(":")
        if colon:
            found.add(password)
            found.update(p for p in _DELIMITERS.split(password) if len(p) >= 3)
    return found


def secrets_in(url: str) -> set[str]:
    """Every substring of ``url`` that is or may be a secret, in each of its spellings."""
    found = _user_info_passwords(url)
    for match in _SECRET_PARAMETER.finditer(url):
        value = match.group(1)
        found.update({value, value.strip("'")})
    try:
        params = parse_dsn(url)
    except Exception:  # unreadable by libpq: the guesses above are all there is
        params = {}
    found.update(params.get(key) or "" for key in ("password", "sslpassword"))
    found |= {unquote(s) for s in found}
    return {s for s in found if s}


def remember(url: str) -> None:
    """Have :func:`redact` hide the secrets of ``url`` from now on."""
    secrets = secrets_in(url)
    with _seen_lock:
        _seen.update(secrets)


def _replace(text: str, secrets: set[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= _ANYWHERE:
            text = text.replace(secret, MASK)
        else:  # a short one only where it stands alone, or "x" would eat "Fix"
            text = re.sub(rf"(?<![^\W_]){re.escape(secret)}(?![^\W_])", MASK, text)
    return text


def redact(text: str, url: str | None = None) -> str:
    """``text`` without the secrets of ``url`` or of any URL remembered in this process."""
    with _seen_lock:
        secrets = set(_seen)
    if url is not None:
        secrets |= secrets_in(url)
    return _replace(text, secrets) if secrets else text


def mask_url(url: str) -> str:
    """The URL with every secret replaced by ``***``; safe to print and log."""
    return _replace(url, secrets_in(url))


def validate_url(url: str, variable: str = "DATABASE_URL") -> dict[str, str]:
    """Check ``url`` as a PostgreSQL URL; libpq's reading of it, or :class:`ConfigError`.

    The returned dict holds the connection parameters (``dbname``, ``host``,
    ...). No message contains a secret of ``url``; each names ``variable``.
    """
    try:
        return _validate(url)
    except ConfigError as exc:
        if variable != "DATABASE_URL":
            exc.message = exc.message.replace("DATABASE_URL", variable, 1)
        raise


def _validate(url: str) -> dict[str, str]:
    remember(url)
    shown = mask_url(url)
    if not url.startswith(SCHEMES):
        form = "no scheme"
        if _ANY_SCHEME.match(url):
            form = f"scheme {url.split('://', 1)[0]!r}"
        elif "=" in url.split("@", 1)[0]:
            form = "a keyword/value connection string"
        raise ConfigError(
            f"DATABASE_URL must be a postgresql:// URL, got {form}: {shown}", hint=_HINT
        )
    rest = url.split("://", 1)[1]
    # Everything before the last '@' is the user info when a password holds an
    # unencoded '@', '/', '?' or '#': libpq would read part of it as the host,
    # port, database or query (and echo it in its errors).
    user_info = rest[: rest.rfind("@")] if "@" in rest else ""
    if any(c in user_info for c in "/?#@"):
        raise ConfigError(
            "DATABASE_URL has a '/', '?', '#' or '@' before its last '@': the user name or "
            f"password must have them percent-encoded, or the URL cannot be read: {shown}",
            hint="Percent-encode them in the user name and password: / as %2F, ? as %3F, "
            "# as %23, @ as %40 (an '@' in a parameter value too).",
        )
    try:
        params = parse_dsn(url)
    except Exception as exc:  # ProgrammingError; UnicodeEncodeError on a lone surrogate
        detail = " ".join(str(exc).split()).removeprefix("invalid dsn: ")
        raise ConfigError(
            f"DATABASE_URL is malformed ({redact(detail, url)}): {shown}", hint=_HINT
        ) from None
    for port in (params.get("port") or "").split(","):
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise ConfigError(
                f"DATABASE_URL is malformed (port {redact(port, url)!r} is not a number "
                f"from 1 to 65535): {shown}",
                hint=_HINT,
            )
    if not params.get("dbname"):
        raise ConfigError(
            f"DATABASE_URL names no database: {shown}",
            hint="Add the database name after the host, e.g. postgresql://localhost/convdb.",
        )
    _check_hosts(params, shown)
    return params


def _check_hosts(params: dict[str, str], shown: str) -> None:
    """Several hosts: as many ports (or one for all), a known target_session_attrs."""
    names = _split(params.get("host")) or _split(params.get("hostaddr"))
    ports = _split(params.get("port"))
    if len(names) > MAX_HOSTS:
        raise ConfigError(
            f"DATABASE_URL names {len(names)} hosts, more than {MAX_HOSTS}: {shown}", hint=_HINT
        )
    if len(ports) > 1 and len(ports) != max(len(names), 1):
        raise ConfigError(
            f"DATABASE_URL has {len(ports)} ports for {len(names)} hosts: give one port for "
            f"every host, or one for all of them: {shown}",
            hint="Use postgresql://USER:PASSWORD@HOST1:PORT1,HOST2:PORT2/DBNAME.",
        )
    attrs = params.get("target_session_attrs")
    if attrs is not None and attrs not in SESSION_ATTRS:
        raise ConfigError(
            f"DATABASE_URL has target_session_attrs={redact(attrs)[:40]!r}, which libpq does not "
            f"know (one of {', '.join(SESSION_ATTRS)}): {shown}",
            hint="convdb writes with target_session_attrs=read-write unless the URL says "
            "otherwise; leave it out, or use one of the values above.",
        )


def _split(value: str | None) -> list[str]:
    return value.split(",") if value else []


@dataclass(frozen=True)
class Host:
    """One server of a URL: where it is, and the libpq parameters that reach it alone."""

    host: str  # a name, an address or a socket folder ("": libpq's default socket)
    port: str
    params: dict[str, str] = field(compare=False)

    @property
    def label(self) -> str:
        """``h1:5432``, ``[::1]:5432``, ``/run/postgresql:5432``: for people (no secret)."""
        shown = f"[{self.host}]" if ":" in self.host else self.host or "local socket"
        return f"{shown}:{self.port}"


def hosts(url: str) -> list[Host]:
    """Every server ``url`` names, in libpq's order.

    ``psycopg2.connect(url, **host.params)`` connects to that one host: its
    host (and ``hostaddr``) and port replace the lists.
    """
    params = parse_dsn(url)
    names = _split(params.get("host"))
    addrs = _split(params.get("hostaddr"))
    count = max(len(names), len(addrs), 1)
    ports = _split(params.get("port")) or [DEFAULT_PORT]
    found = []
    for i in range(count):
        port = (ports[i] if len(ports) > 1 else ports[0]) or DEFAULT_PORT
        one = {"port": port}
        if names:
            one["host"] = names[min(i, len(names) - 1)]
        if addrs:
            one["hostaddr"] = addrs[min(i, len(addrs) - 1)]
        found.append(Host(one.get("host") or one.get("hostaddr") or "", port, one))
    return found


class _RedactingRecordFactory:
    """Wraps the log record factory so that no record carries a remembered secret."""

    def __init__(self, wrapped) -> None:
        self.wrapped = wrapped

    def __call__(self, *args, **kwargs) -> logging.LogRecord:
        record = self.wrapped(*args, **kwargs)
        try:
            record.msg, record.args = redact(record.getMessage()), ()
        except Exception:  # a bad format string: the handler reports it, as usual
            return record
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return record


def redact_log_records() -> None:
    """Make every log record of this process pass through :func:`redact` (idempotent)."""
    factory = logging.getLogRecordFactory()
    if not isinstance(factory, _RedactingRecordFactory):
        logging.setLogRecordFactory(_RedactingRecordFactory(factory))
