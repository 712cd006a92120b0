"""The console's HTTP plumbing: security headers, the access log, forms, cookies, templates.

Every response carries a strict Content-Security-Policy (no script at all,
styles and images from the console only, no framing, forms posting only to
the console), ``X-Frame-Options: DENY``, ``Referrer-Policy: no-referrer``,
``X-Content-Type-Options: nosniff`` and ``Cache-Control: no-store`` (pages
hold personal data). The access log names the method, the path (ids only:
no page ever puts personal data in a URL) and the status; never a query
string or a form.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from urllib.parse import parse_qsl

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request

from ..serve.settings import ServeSettings
from ..serve.urls import client_address, peer

HERE = Path(__file__).resolve().parent
access_log = logging.getLogger("convdb.console.access")

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]
#: Largest form body read (a login, a confirmation).
MAX_FORM_BYTES = 16 * 1024

SESSION_COOKIE = "convdb_console"
LOGIN_COOKIE = "convdb_console_login"


#: Rows per page of every list.
PAGE = 50
#: Seconds a page's reads may take (statement timeout and the reader's deadline).
READ_TIMEOUT = 5.0


class Refused(Exception):
    """A request refused with a page: ``status`` and a message for the person."""

    def __init__(self, status: int, message: str, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


class FormError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def templates() -> Environment:
    """Jinja2 with autoescaping on for every template: what came from a message is text."""
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = lambda value: "—" if value is None else f"{value:%Y-%m-%d %H:%M:%S} UTC"
    env.filters["age"] = age_text
    env.filters["size"] = size_text
    return env


def age_text(seconds: float | None) -> str:
    """``3 h 12 min``, ``4 min 5 s``, ``12 s``."""
    if seconds is None:
        return "—"
    s = max(int(seconds), 0)
    if s >= 86400:
        return f"{s // 86400} d {s % 86400 // 3600} h"
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60} min"
    if s >= 60:
        return f"{s // 60} min {s % 60} s"
    return f"{s} s"


def size_text(size: int | None) -> str:
    if size is None:
        return "size unknown"
    for unit, length in (("MiB", 2**20), ("KiB", 2**10)):
        if size >= length:
            return f"{size / length:.1f} {unit}"
    return f"{size} bytes"


async def read_form(request: Request) -> dict[str, str]:
    """An urlencoded form of at most :data:`MAX_FORM_BYTES`; :class:`FormError` otherwise."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise FormError(415, "expected a form")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise FormError(413, "the form is too large")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=50)
    except (UnicodeDecodeError, ValueError):
        raise FormError(400, "the form could not be read") from None
    return dict(pairs)


def is_https(request: Request, proxies: ServeSettings) -> bool:
    if request.url.scheme == "https":
        return True
    if proxies.trusts(peer(request.scope)):
        proto = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
        return proto == "https"
    return False


def client(request: Request, proxies: ServeSettings) -> str:
    return client_address(request.scope, request.headers, proxies) or "-"


def cookie(name: str, value: str, *, secure: bool, path: str = "/", clear: bool = False) -> str:
    parts = [f"{name}={'' if clear else value}", f"Path={path}", "HttpOnly", "SameSite=Strict"]
    if secure:
        parts.append("Secure")
    if clear:
        parts.append("Max-Age=0")
    return "; ".join(parts)


class SecurityHeaders:
    """ASGI middleware: the security headers on every response, and one access-log line."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_headers(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                names = {name for name, _ in SECURITY_HEADERS}
                headers = [(k, v) for k, v in message.get("headers", []) if k not in names]
                elapsed = (time.perf_counter() - started) * 1000
                headers += [
                    *SECURITY_HEADERS,
                    (b"server-timing", f"app;dur={elapsed:.1f}".encode()),
                ]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            access_log.info(
                "%s %s %d %.1fms",
                scope["method"],
                scope.get("path", "")[:200],
                status,
                (time.perf_counter() - started) * 1000,
            )


__all__ = [
    "CSP",
    "LOGIN_COOKIE",
    "PAGE",
    "SESSION_COOKIE",
    "FormError",
    "Refused",
    "SecurityHeaders",
    "client",
    "cookie",
    "is_https",
    "read_form",
    "templates",
]
