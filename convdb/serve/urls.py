"""The URL a sender called and who the sender is, as seen through a reverse proxy.

A proxy (TLS termination, a load balancer) hands the receiver another URL
than the one the provider signed (``https://hooks.example.com/hooks/T``
arrives as ``http://10.0.0.7:8000/hooks/T``). Providers that sign the URL
(Twilio) need the original:

1. ``CONVDB_PUBLIC_URL`` set: that base URL plus the path within the
   receiver (and the query string). The safest choice: nothing in the
   request can change it.
2. Else, when the peer is in ``CONVDB_TRUSTED_PROXIES``: the
   ``X-Forwarded-Proto``, ``X-Forwarded-Host``, ``X-Forwarded-Port`` and
   ``X-Forwarded-Prefix`` headers it sets.
3. Else: the request's own scheme and ``Host`` header.

The client address is the peer's, or, through a trusted proxy, the last
``X-Forwarded-For`` entry that is not itself a trusted proxy. Forwarded
headers from anyone else are ignored: a sender cannot pick the URL its
signature is checked against.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

from .settings import ServeSettings

_DEFAULT_PORTS = {"http": "80", "https": "443"}


def _first(value: str | None) -> str | None:
    if not value:
        return None
    item = value.split(",")[0].strip()
    return item or None


def peer(scope: Mapping) -> str | None:
    client = scope.get("client")
    return client[0] if client else None


def client_address(scope: Mapping, headers: Mapping[str, str], settings: ServeSettings):
    """The sender's address (see the module docstring)."""
    address = peer(scope)
    if not settings.trusts(address):
        return address
    hops = [h.strip() for h in (headers.get("x-forwarded-for") or "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not settings.trusts(hop):
            return hop[:64]
    return address


def app_path(scope: Mapping) -> str:
    """The request path within the receiver (without a mount's ``root_path``)."""
    path = scope.get("path", "/")
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :] or "/"
    return path


def public_url(scope: Mapping, headers: Mapping[str, str], settings: ServeSettings) -> str:
    """The URL the sender called, query string included (see the module docstring)."""
    query = scope.get("query_string", b"").decode("latin-1")
    suffix = quote(app_path(scope), safe="/:@!$&'()*+,;=-._~%") + (f"?{query}" if query else "")
    if settings.public_url:
        return settings.public_url + suffix
    scheme = scope.get("scheme", "http")
    host = headers.get("host") or ""
    prefix = scope.get("root_path", "")
    if settings.trusts(peer(scope)):
        scheme = (_first(headers.get("x-forwarded-proto")) or scheme).lower()
        host = _first(headers.get("x-forwarded-host")) or host
        port = _first(headers.get("x-forwarded-port"))
        has_port = ":" in host.rsplit("]", 1)[-1]
        if port and port.isdigit() and not has_port and port != _DEFAULT_PORTS.get(scheme):
            host = f"{host}:{port}"
        prefix = (_first(headers.get("x-forwarded-prefix")) or "").rstrip("/") + prefix
    if not host:
        server = scope.get("server")
        host = f"{server[0]}:{server[1]}" if server else "localhost"
    return f"{scheme}://{host}{prefix}{suffix}"


__all__ = ["app_path", "client_address", "peer", "public_url"]
