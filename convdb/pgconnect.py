"""How convdb opens every PostgreSQL connection: the libpq parameters it adds, and why one failed.

Every connection of every convdb process (the commands, ``pw_migrate``, the
worker, the receiver) is opened with :func:`connect_params`, which adds what
the URL does not set itself (a parameter in the URL always wins):

- ``connect_timeout`` (``CONVDB_DB_CONNECT_TIMEOUT``): seconds per host, so a
  host that drops packets costs seconds, not the operating system's minutes;
- TCP keepalives (``keepalives``, ``keepalives_idle``, ``keepalives_interval``,
  ``keepalives_count``: ``CONVDB_DB_KEEPALIVES_*``) and ``tcp_user_timeout``
  (``CONVDB_DB_TCP_USER_TIMEOUT``): a server that vanished without closing
  the connection (a dead host, a cut network) is noticed by the kernel, on
  an idle connection and on one waiting for an answer;
- ``target_session_attrs``: ``read-write`` for the database that takes the
  writes (``DATABASE_URL``), so that with several hosts libpq skips the
  standbys and, after a failover, finds the new primary on the next
  connection; ``prefer-standby`` for ``CONVDB_READ_URL``.

Keepalives cannot tell a server that stopped answering while its kernel
still acknowledges (a wedged proxy, a frozen process): the processes that
must keep going (the receiver, the worker) also put a deadline on each call
(:mod:`convdb.watchdog`).

:func:`describe_connect_error` turns libpq's refusal into one paragraph for
operators; :func:`no_writable_host` tells "every host is a standby" apart
from "nothing answers", since the receiver and the worker wait for a
promotion where a one-shot command fails at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from psycopg2.extensions import libpq_version, parse_dsn

from .dburl import mask_url, redact

Role = Literal["write", "read"]

# libpq's messages when a host answered but is not what target_session_attrs
# asked for (libpq 14 and later; "could not make a writable connection" before).
_NOT_WRITABLE = (
    "session is read-only",
    "server is in hot standby mode",
    "could not make a writable connection",
)
# prefer-standby appeared in libpq 14; older ones only know any and read-write.
_PREFER_STANDBY = "prefer-standby" if libpq_version() >= 140000 else "any"


@dataclass(frozen=True)
class ConnectOptions:
    """The connection settings (``CONVDB_DB_*``), in libpq's units where they differ."""

    connect_timeout: int = 5
    keepalives_idle: int = 30  # 0: no keepalives
    keepalives_interval: int = 10
    keepalives_count: int = 3
    tcp_user_timeout: float = 30.0  # seconds; 0: the operating system's

    @classmethod
    def from_settings(cls, settings=None) -> ConnectOptions:
        if settings is None:
            from .config import load_settings

            settings = load_settings()
        return cls(
            connect_timeout=settings.db_connect_timeout,
            keepalives_idle=settings.db_keepalives_idle,
            keepalives_interval=settings.db_keepalives_interval,
            keepalives_count=settings.db_keepalives_count,
            tcp_user_timeout=settings.db_tcp_user_timeout,
        )

    def libpq(self) -> dict[str, str]:
        """These settings as libpq keyword parameters."""
        params = {"connect_timeout": str(self.connect_timeout)}
        if self.keepalives_idle:
            params.update(
                keepalives="1",
                keepalives_idle=str(self.keepalives_idle),
                keepalives_interval=str(self.keepalives_interval),
                keepalives_count=str(self.keepalives_count),
            )
        else:
            params["keepalives"] = "0"
        if self.tcp_user_timeout:
            params["tcp_user_timeout"] = str(int(self.tcp_user_timeout * 1000))
        return params


def connect_params(
    url: str, role: Role = "write", options: ConnectOptions | None = None
) -> dict[str, str]:
    """The keyword parameters to pass beside ``url`` (``psycopg2.connect(url, **params)``).

    Only what ``url`` leaves unset; ``role`` picks ``target_session_attrs``.
    """
    options = options or ConnectOptions.from_settings()
    wanted = options.libpq()
    wanted["target_session_attrs"] = "read-write" if role == "write" else _PREFER_STANDBY
    given = parse_dsn(url)
    return {key: value for key, value in wanted.items() if key not in given}


def role_of(url: str, settings=None) -> Role:
    """``"read"`` for ``CONVDB_READ_URL`` (unless it is ``DATABASE_URL`` too), else ``"write"``.

    Whoever opens the read URL (search, the console, :func:`convdb.db.connect_read`)
    gets a connection that prefers a standby, not one refused for not being writable.
    """
    if settings is None:
        from .config import load_settings

        settings = load_settings()
    replica = settings.read_url is not None and settings.read_url != settings.database_url
    return "read" if replica and url == settings.read_url else "write"


def no_writable_host(exc: BaseException) -> bool:
    """Did libpq reach hosts that were all standbys (or read-only), rather than none?"""
    text = str(exc)
    return any(marker in text for marker in _NOT_WRITABLE)


def describe_connect_error(url: str, exc: BaseException) -> str:
    """One paragraph on why ``url`` could not be reached, password masked."""
    detail = redact(" ".join(str(exc).split()) or exc.__class__.__name__, url)
    if no_writable_host(exc):
        return (
            f"no host of {mask_url(url)} accepts writes: each one that answered is a standby or "
            f"read-only (convdb connects with target_session_attrs=read-write) ({detail})"
        )
    return f"cannot connect to {mask_url(url)}: {detail}"


def connect_hint(exc: BaseException, variable: str = "DATABASE_URL") -> str:
    """What the operator can do about ``exc``, a failed connection."""
    if no_writable_host(exc):
        return (
            f"Promote a standby, or add the primary to {variable} "
            "(postgresql://USER:PASSWORD@HOST1:PORT1,HOST2:PORT2/DBNAME); "
            "commands that only read can use CONVDB_READ_URL."
        )
    return (
        f"Check {variable} (host, port, user, password, database name) "
        "and that the server is running."
    )


__all__ = [
    "ConnectOptions",
    "connect_hint",
    "connect_params",
    "describe_connect_error",
    "no_writable_host",
    "role_of",
]
