"""The receiver's settings, from the environment (and ``.env``), validated at start.

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
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ..config import environ
from ..exceptions import ConfigError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


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

    def trusts(self, address: str | None) -> bool:
        """Is ``address`` one of the configured proxies?"""
        if not address or not self.trusted_proxies:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.trusted_proxies)


# variable: (field, type, lowest, highest)
_NUMBERS = {
    "CONVDB_SERVE_MAX_BODY": ("max_body", int, 1024, 1024**3),
    "CONVDB_SERVE_MAX_HEADERS": ("max_headers", int, 1024, 1024**2),
    "CONVDB_SERVE_TOLERANCE": ("tolerance", float, 1, 86_400),
    "CONVDB_SERVE_COMMIT_TIMEOUT": ("commit_timeout", float, 0.1, 300),
    "CONVDB_SERVE_RETRY_AFTER": ("retry_after", int, 1, 3600),
    "CONVDB_SERVE_MAX_GROUP": ("max_group", int, 1, 10_000),
    "CONVDB_SERVE_REFRESH": ("refresh", float, 0.1, 3600),
}


def load_serve_settings(env_file: Path | None = None) -> ServeSettings:
    """Read and check every receiver variable; :class:`ConfigError` names the bad one."""
    env = environ(env_file)
    values: dict = {}
    for name, (field, kind, low, high) in _NUMBERS.items():
        raw = (env.get(name) or "").strip()
        if not raw:
            continue
        try:
            value = kind(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw[:40]!r} is not a {kind.__name__} number") from None
        if not low <= value <= high:
            raise ConfigError(f"{name}={raw[:40]} is outside {low:g}..{high:g}")
        values[field] = value
    public = (env.get("CONVDB_PUBLIC_URL") or "").strip()
    if public:
        values["public_url"] = check_public_url(public)
    proxies = (env.get("CONVDB_TRUSTED_PROXIES") or "").strip()
    if proxies:
        values["trusted_proxies"] = parse_networks(proxies)
    return ServeSettings(**values)


def check_public_url(url: str) -> str:
    """``url`` without a trailing ``/``, if it is an http(s) URL without query or fragment."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ConfigError(f"CONVDB_PUBLIC_URL is not a URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            "CONVDB_PUBLIC_URL must be http(s)://HOST[:PORT][/PREFIX]",
            hint="Give the URL at which senders reach the receiver's root, "
            "e.g. https://hooks.example.com.",
        )
    if parts.query or parts.fragment or parts.username or parts.password or len(url) > 2000:
        raise ConfigError("CONVDB_PUBLIC_URL must not hold a query, fragment or credentials")
    return url.rstrip("/")


def parse_networks(value: str) -> tuple[Network, ...]:
    networks = []
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(
                f"CONVDB_TRUSTED_PROXIES: {item[:60]!r} is not an address or network",
                hint="Use addresses or CIDR networks, comma-separated: 10.0.0.5,192.168.0.0/24.",
            ) from None
    return tuple(networks)


__all__ = ["ServeSettings", "check_public_url", "load_serve_settings", "parse_networks"]
