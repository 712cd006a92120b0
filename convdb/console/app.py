"""The operator console as an ASGI application: ``create_app()``.

::

    from convdb.console.app import create_app
    app = create_app()     # settings from the environment; refuses without a password

Pages (GET, after login): ``/queue``, ``/dead``, ``/events/{id}``,
``/dead/confirm``, ``/jobs/{id}``, ``/endpoints``, ``/customers``,
``/customers/{id}``, ``/conversations/{id}``. Actions (POST with the
session's CSRF token, admin sessions only): ``/dead/act``, ``/logout``;
``/login`` takes the password. Pages read on ``CONVDB_READ_URL`` (else the
primary); actions write on the primary. The page handlers are in
:mod:`convdb.console.views`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..db import resolve_read_url, resolve_url
from ..serve.pg import Unavailable
from ..serve.reader import Reader
from . import auth, views
from .jobs import Jobs
from .settings import ConsoleSettings, load_console_settings, passwords
from .web import (
    HERE,
    LOGIN_COOKIE,
    READ_TIMEOUT,
    SESSION_COOKIE,
    FormError,
    Refused,
    SecurityHeaders,
    client,
    cookie,
    is_https,
    read_form,
    templates,
)

log = logging.getLogger("convdb.console")


class Console:
    """The console's parts: settings, sessions, the read and write databases, jobs."""

    def __init__(self, settings: ConsoleSettings, read_url: str, write_url: str) -> None:
        self.settings = settings
        self.write_url = write_url
        self.reader = Reader(read_url, statement_timeout=READ_TIMEOUT, name="convdb console")
        self.sessions = auth.Sessions(settings.session_minutes * 60, settings.session_hours * 3600)
        self.limiter = auth.LoginLimiter(settings.login_attempts)
        self.jobs = Jobs(write_url)
        self.env = templates()

    async def read(self, fn, *args, **kwargs):
        """``fn(conn, *args, **kwargs)`` on the read connection."""
        return await self.reader.run(lambda conn: fn(conn, *args, **kwargs), timeout=READ_TIMEOUT)

    # --- rendering ---------------------------------------------------------------

    def render(self, request: Request, name: str, status: int = 200, **context) -> HTMLResponse:
        session = request.scope.get("convdb.session")
        flash = []
        if session is not None:
            flash, session.flash = session.flash, []
        html = self.env.get_template(name).render(
            session=session,
            csrf=session.csrf if session else "",
            can_act=bool(session and session.can_act),
            flash=flash,
            path=request.url.path,
            status_code=status,
            **context,
        )
        return HTMLResponse(html, status_code=status)

    def refused(self, request: Request, exc: Refused) -> HTMLResponse:
        answer = self.render(request, "error.html", exc.status, message=exc.message)
        answer.headers.update(exc.headers)
        return answer

    # --- sessions ----------------------------------------------------------------

    def session(self, request: Request) -> auth.Session | None:
        session = self.sessions.get(request.cookies.get(SESSION_COOKIE))
        request.scope["convdb.session"] = session
        return session

    async def posted(self, request: Request, *, act: bool = True) -> dict[str, str]:
        """The form of a state-changing request, once its session, CSRF token and role pass."""
        origin = request.headers.get("origin")
        if origin and origin != "null" and origin.rstrip("/") != _origin(request):
            raise Refused(403, "This form came from another site; nothing was changed.")
        session = self.session(request)
        try:
            form = await read_form(request)
        except FormError as exc:
            raise Refused(exc.status, exc.message) from None
        if session is None:
            raise Refused(403, "Your session has ended; log in again. Nothing was changed.")
        if not auth.same_token(form.get("csrf"), session.csrf):
            raise Refused(403, "This form is stale (its CSRF token is not valid); nothing changed.")
        if act and not session.can_act:
            raise Refused(403, "This session is read-only; nothing was changed.")
        return form

    # --- login and logout --------------------------------------------------------------

    async def login_page(self, request: Request) -> Response:
        if self.session(request) is not None:
            return RedirectResponse("/queue", 303)
        return self._login_form(request)

    def _login_form(self, request: Request, status: int = 200, error: str | None = None):
        token = secrets.token_urlsafe(24)
        answer = self.render(request, "login.html", status, login_token=token, error=error)
        secure = is_https(request, self.settings.proxies)
        answer.headers.append(
            "set-cookie", cookie(LOGIN_COOKIE, token, secure=secure, path="/login")
        )
        return answer

    async def login(self, request: Request) -> Response:
        address = client(request, self.settings.proxies)
        wait = self.limiter.retry_after(address)
        if wait:
            log.warning("login refused for %s: too many failed attempts", address)
            answer = self._login_form(
                request, 429, f"Too many failed logins; try again in {wait} s."
            )
            answer.headers["retry-after"] = str(wait)
            return answer
        try:
            form = await read_form(request)
        except FormError as exc:
            return self._login_form(request, exc.status, exc.message)
        if not auth.same_token(form.get("login_token"), request.cookies.get(LOGIN_COOKIE, "")):
            return self._login_form(request, 403, "The login form expired; please try again.")
        try:
            configured = await asyncio.to_thread(passwords, self.settings)
        except Exception as exc:  # a password file removed meanwhile: nobody gets in
            log.error("cannot read the console password: %s", exc)
            return self._login_form(request, 503, "The console cannot read its password now.")
        role = auth.check_password(form.get("password", ""), configured)
        if role is None:
            self.limiter.failed(address)
            log.warning("failed console login from %s", address)
            return self._login_form(request, 401, "Wrong password.")
        self.limiter.succeeded(address)
        token, _session = self.sessions.create(role)
        log.info("console login (%s) from %s", role, address)
        answer = RedirectResponse("/queue", 303)
        secure = is_https(request, self.settings.proxies)
        answer.headers.append("set-cookie", cookie(SESSION_COOKIE, token, secure=secure))
        answer.headers.append(
            "set-cookie", cookie(LOGIN_COOKIE, "", secure=secure, path="/login", clear=True)
        )
        return answer

    async def logout(self, request: Request) -> Response:
        await self.posted(request, act=False)
        self.sessions.end(request.cookies.get(SESSION_COOKIE))
        answer = RedirectResponse("/login", 303)
        secure = is_https(request, self.settings.proxies)
        answer.headers.append("set-cookie", cookie(SESSION_COOKIE, "", secure=secure, clear=True))
        return answer

    async def shutdown(self) -> None:
        await asyncio.to_thread(self.jobs.close)
        await asyncio.to_thread(self.reader.close)


def _origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.headers.get('host', '')}"


def create_app(
    settings: ConsoleSettings | None = None,
    *,
    read_url: str | None = None,
    write_url: str | None = None,
) -> Starlette:
    """The console's ASGI app; settings default to :func:`load_console_settings`.

    Pages read on ``read_url`` (default :func:`convdb.db.resolve_read_url`),
    actions write on ``write_url`` (default :func:`convdb.db.resolve_url`).
    """
    settings = settings or load_console_settings()
    write_url = write_url or resolve_url()
    read_url = read_url or resolve_read_url()
    console = Console(settings, read_url, write_url)
    pages = views.Pages(console)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        await console.shutdown()

    async def not_found(request: Request, exc: HTTPException) -> Response:
        console.session(request)
        message = "There is no such page." if exc.status_code == 404 else str(exc.detail)
        return console.render(request, "error.html", exc.status_code, message=message)

    async def refused(request: Request, exc: Refused) -> Response:
        return console.refused(request, exc)

    async def unavailable(request: Request, exc: Unavailable) -> Response:
        log.warning("database unavailable: %s", exc)
        return console.refused(
            request, Refused(503, "The database is unavailable now; try again shortly.")
        )

    app = Starlette(
        routes=[
            Route("/", lambda request: RedirectResponse("/queue", 303)),
            Route("/login", console.login_page, methods=["GET"]),
            Route("/login", console.login, methods=["POST"]),
            Route("/logout", console.logout, methods=["POST"]),
            *pages.routes(),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ],
        exception_handlers={
            HTTPException: not_found,
            Refused: refused,
            Unavailable: unavailable,
        },
        lifespan=lifespan,
    )
    app.add_middleware(SecurityHeaders)
    app.state.console = console
    return app


__all__ = ["Console", "create_app"]
