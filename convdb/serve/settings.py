"""The receiver's settings: declared and checked with every other one in :mod:`convdb.config`.

=============================== ============ ==========================================
variable                        default      meaning
=============================== ============ ==========================================
``CONVDB_SERVE_MAX_BODY``       ``1048576``  largest body in bytes (413 above; an adapter
                                             may set its own)
``CONVDB_SERVE_MAX_HEADERS``    ``16384``    largest total of header bytes (431 above)
``CONVDB_SERVE_TOLERANCE``      ``300``      seconds a signed timestamp may be off
``CONVDB_SERVE_COMMIT_TIMEOUT`` ``10``       seconds a request waits for its commit (503)
``CONVDB_SERVE_RETRY_AFTER``    ``5``        the ``Retry-After`` seconds of a 503
``CONVDB_SERVE_MAX_GROUP``      ``1000``     most rows in one group commit
``CONVDB_SERVE_REFRESH``        ``5``        seconds between re-reads of the endpoints
``CONVDB_PUBLIC_URL``           (unset)      the URL of the receiver's root as senders
                                             call it (``https://hooks.example.com``)
``CONVDB_TRUSTED_PROXIES``      (unset)      addresses or networks (comma-separated)
                                             whose ``X-Forwarded-*`` headers are believed
=============================== ============ ==========================================

Bounds on slow or large requests:

================================ =========== ==========================================
variable                         default     meaning
================================ =========== ==========================================
``CONVDB_SERVE_MAX_FORM_BODY``   ``4194304`` largest form-encoded body in bytes (413
                                             above), whatever the adapter's limit
``CONVDB_SERVE_BODY_TIMEOUT``    ``60``      seconds a whole body may take to arrive
                                             (408 after)
``CONVDB_SERVE_MAX_CONNECTIONS`` ``1000``    most open connections per process (503
                                             above; uvicorn's ``limit_concurrency``)
================================ =========== ==========================================
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from ..config import Network, base_url, load_settings
from ..config import networks as _networks
from ..exceptions import ConfigError


@dataclass(frozen=True)
class ServeSettings:
    max_body: int = 1024 * 1024
    max_headers: int = 16 * 1024
    tolerance: float = 300.0
    commit_timeout: float = 10.0
    retry_after: int = 5
    max_group: int = 1000
    refresh: float = 5.0
    public_url: str | None = None
    trusted_proxies: tuple[Network, ...] = ()
    max_form_body: int = 4 * 1024 * 1024
    body_timeout: float = 60.0
    max_connections: int = 1000

    def trusts(self, address: str | None) -> bool:
        """Is ``address`` one of the configured proxies?"""
        if not address or not self.trusted_proxies:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.trusted_proxies)


def load_serve_settings(env_file: Path | None = None) -> ServeSettings:
    """The receiver's view of :func:`convdb.config.load_settings` (which checks them all)."""
    settings = load_settings(env_file)
    return ServeSettings(
        max_body=settings.serve_max_body,
        max_headers=settings.serve_max_headers,
        tolerance=settings.serve_tolerance,
        commit_timeout=settings.serve_commit_timeout,
        retry_after=settings.serve_retry_after,
        max_group=settings.serve_max_group,
        refresh=settings.serve_refresh,
        public_url=settings.public_url,
        trusted_proxies=settings.trusted_proxies or (),
        max_form_body=settings.serve_max_form_body,
        body_timeout=settings.serve_body_timeout,
        max_connections=settings.serve_max_connections,
    )


def _named(variable: str, parse, text: str):
    try:
        return parse(text)
    except ValueError as exc:
        raise ConfigError(f"{variable}={text[:80]!r}: {exc}") from None


def check_public_url(url: str) -> str:
    """``url`` without a trailing ``/``, if it is an http(s) URL without query or fragment."""
    return _named("CONVDB_PUBLIC_URL", base_url, url)


def parse_networks(value: str) -> tuple[Network, ...]:
    """Addresses or CIDR networks, comma-separated."""
    return _named("CONVDB_TRUSTED_PROXIES", _networks, value)


__all__ = ["ServeSettings", "check_public_url", "load_serve_settings", "parse_networks"]
