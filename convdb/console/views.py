"""The console's pages and its one action route, on :class:`convdb.console.app.Console`.

Reads go through the console's read connection (``CONVDB_READ_URL``, else
the primary); the retry and purge of dead events through the queue's own
functions on the primary (:func:`convdb.queue.ops.retry_dead`,
:func:`~convdb.queue.ops.purge_dead`, and :mod:`convdb.console.jobs` for bulk
actions). Ids in paths are checked to be ids (a 404 page otherwise);
filters and cursors in query strings hold no personal data.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import re

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ..config import load_settings
from ..exceptions import SearchError
from ..queue import ops, overview
from ..search import search_on
from . import chart, data
from .jobs import ACTIONS, Busy
from .web import PAGE, READ_TIMEOUT, Refused

MAX_ID = 2**63 - 1
#: Largest payload shown on an event's page (bytes of JSON text).
SHOWN_PAYLOAD = 256 * 1024
_EVENT_TYPE = re.compile(r"^[\x21-\x7e]{1,200}$")


def _id(text: str | None, *, missing=None) -> int | None:
    """A database id from a path or query string; 404 for anything else."""
    if text is None or text == "":
        return missing
    if not text.isdigit() or len(text) > 19 or not 0 < int(text) <= MAX_ID:
        raise Refused(404, "There is no such page.")
    return int(text)


def _event_type(text: str | None) -> str | None:
    if not text:
        return None
    if not _EVENT_TYPE.match(text):
        raise Refused(400, "That is not an event type.")
    return text


def _cursor(text: str | None) -> data.Cursor | None:
    try:
        return data.Cursor.parse(text)
    except ValueError:
        raise Refused(400, "That page cursor is not valid.") from None


def page(handler):
    """Log in first; the session is in ``request.scope`` for the templates."""

    @functools.wraps(handler)
    async def wrapped(self: Pages, request: Request) -> Response:
        if self.c.session(request) is None:
            return RedirectResponse("/login", 303)
        return await handler(self, request)

    return wrapped


class Pages:
    def __init__(self, console) -> None:  # a convdb.console.app.Console
        self.c = console
        self.minutes = overview.MinuteCache()  # used on the reader's one thread only

    def routes(self) -> list[Route]:
        return [
            Route("/queue", self.queue),
            Route("/dead", self.dead),
            Route("/dead/confirm", self.confirm),
            Route("/dead/act", self.act, methods=["POST"]),
            Route("/jobs/{job}", self.job),
            Route("/events/{event}", self.event),
            Route("/endpoints", self.endpoints),
            Route("/customers", self.customers),
            Route("/customers/{customer}", self.customer),
            Route("/customers/{customer}/search", self.search, methods=["GET", "POST"]),
            Route("/conversations/{conversation}", self.conversation),
        ]

    # --- the queue ---------------------------------------------------------------

    @page
    async def queue(self, request: Request) -> Response:
        def read(conn):
            flow = overview.throughput(conn, cache=self.minutes)
            return overview.counts(conn), overview.head(conn), flow

        counts, head, flow = await self.c.read(read)
        drawn = chart.build(
            flow.minutes, {"received": flow.received, "done": flow.done, "dead": flow.dead}
        )
        return self.c.render(
            request, "queue.html", title="Queue", counts=counts, head=head, flow=flow, chart=drawn
        )

    # --- dead events ------------------------------------------------------------------

    @page
    async def dead(self, request: Request) -> Response:
        event_type = _event_type(request.query_params.get("type"))
        before = _id(request.query_params.get("before"))
        rows = await self.c.read(
            overview.dead_page, event_type=event_type, before=before, limit=PAGE + 1
        )
        more = len(rows) > PAGE
        rows = rows[:PAGE]
        return self.c.render(
            request,
            "dead.html",
            title="Dead events",
            rows=rows,
            event_type=event_type,
            next_before=rows[-1].id if more else None,
        )

    @page
    async def confirm(self, request: Request) -> Response:
        action = request.query_params.get("action")
        if action not in ACTIONS:
            raise Refused(400, "Choose retry or purge.")
        event_id = _id(request.query_params.get("id"))
        if event_id is not None:
            found = await self.c.read(overview.event, event_id, max_bytes=0)
            if found is None:
                raise Refused(404, "There is no such event.")
            return self.c.render(
                request, "confirm.html", title="Confirm", action=action, event=found, bulk=None
            )
        event_type = _event_type(request.query_params.get("type"))
        count, newest = await self.c.read(overview.dead_summary, event_type=event_type)
        return self.c.render(
            request,
            "confirm.html",
            title="Confirm",
            action=action,
            event=None,
            bulk={"event_type": event_type, "count": count, "max_id": newest},
        )

    async def act(self, request: Request) -> Response:
        form = await self.c.posted(request)
        session = request.scope["convdb.session"]
        action = form.get("action")
        if action not in ACTIONS:
            raise Refused(400, "Choose retry or purge.")
        event_id = _id(form.get("id"))
        if event_id is not None:
            fn = ops.retry_dead if action == "retry" else ops.purge_dead
            count = await asyncio.to_thread(fn, ids=[event_id], url=self.c.write_url)
            if not count:
                session.flash.append(f"Event {event_id} was not dead any more; nothing changed.")
                return RedirectResponse(f"/events/{event_id}", 303)
            if action == "retry":
                session.flash.append(f"Event {event_id} is pending again.")
                return RedirectResponse(f"/events/{event_id}", 303)
            session.flash.append(f"Event {event_id} was purged.")
            return RedirectResponse("/dead", 303)
        event_type = _event_type(form.get("type"))
        max_id = _id(form.get("max_id"))
        if max_id is None:
            raise Refused(400, "Nothing to act on: the confirmation had no dead events.")
        count, _ = await asyncio.to_thread(
            ops.dead_summary, event_type=event_type, max_id=max_id, url=self.c.write_url
        )
        try:
            job = self.c.jobs.start(action, event_type, max_id, count)
        except Busy as exc:
            raise Refused(409, str(exc)) from None
        return RedirectResponse(f"/jobs/{job.id}", 303)

    @page
    async def job(self, request: Request) -> Response:
        job_id = _id(request.path_params["job"])
        job = self.c.jobs.get(job_id)
        if job is None:
            raise Refused(404, "There is no such job (jobs are forgotten at a restart).")
        return self.c.render(request, "job.html", title=f"Job {job.id}", job=job)

    @page
    async def event(self, request: Request) -> Response:
        event_id = _id(request.path_params["event"])
        found = await self.c.read(overview.event, event_id, max_bytes=SHOWN_PAYLOAD)
        if found is None:
            raise Refused(404, "There is no such event.")
        pretty = None
        if found.payload_text is not None:
            try:
                pretty = json.dumps(json.loads(found.payload_text), indent=2, ensure_ascii=False)
            except ValueError:
                pretty = found.payload_text
        return self.c.render(
            request,
            "event.html",
            title=f"Event {event_id}",
            event=found,
            payload=pretty,
            shown_limit=SHOWN_PAYLOAD,
        )

    # --- endpoints and customers ---------------------------------------------------------

    @page
    async def endpoints(self, request: Request) -> Response:
        after = _id(request.query_params.get("after"), missing=0)
        rows = await self.c.read(data.endpoints_page, after, PAGE + 1)
        more = len(rows) > PAGE
        rows = rows[:PAGE]
        return self.c.render(
            request,
            "endpoints.html",
            title="Endpoints",
            rows=rows,
            next_after=rows[-1]["id"] if more else None,
        )

    @page
    async def customers(self, request: Request) -> Response:
        after = _id(request.query_params.get("after"), missing=0)
        rows = await self.c.read(data.customers_page, after, PAGE + 1)
        more = len(rows) > PAGE
        rows = rows[:PAGE]
        return self.c.render(
            request,
            "customers.html",
            title="Customers",
            rows=rows,
            next_after=rows[-1]["id"] if more else None,
        )

    @page
    async def customer(self, request: Request) -> Response:
        customer_id = _id(request.path_params["customer"])
        cursor = _cursor(request.query_params.get("after"))

        def read(conn):
            found = data.customer(conn, customer_id)
            return found, (data.inbox_page(conn, customer_id, cursor, PAGE) if found else None)

        found, inbox = await self.c.read(read)
        if found is None:
            raise Refused(404, "There is no such customer.")
        rows, next_cursor = inbox
        return self.c.render(
            request,
            "customer.html",
            title=found["name"],
            customer=found,
            rows=rows,
            next_cursor=next_cursor.text() if next_cursor else None,
        )

    async def search(self, request: Request) -> Response:
        """The customer's messages that match a query: a POST, so the words (personal
        data: names, numbers, addresses) stay out of URLs and access logs."""
        if request.method == "GET":  # a bookmarked or reloaded result page
            if self.c.session(request) is None:
                return RedirectResponse("/login", 303)
            return RedirectResponse(f"/customers/{_id(request.path_params['customer'])}", 303)
        form = await self.c.posted(request, act=False)
        customer_id = _id(request.path_params["customer"])
        text = form.get("q") or ""
        before = form.get("before") or None
        # Within the console's own read deadline, so a long search is refused, not cut off.
        settings = load_settings()
        settings = dataclasses.replace(
            settings, search_timeout=min(settings.search_timeout, READ_TIMEOUT - 1)
        )

        def read(conn):
            found = data.customer(conn, customer_id)
            if found is None:
                return None, None, None
            try:
                page = search_on(conn, customer_id, text, before=before, settings=settings)
                return found, page, None
            except SearchError as exc:
                return found, None, exc

        found, results, error = await self.c.read(read)
        if found is None:
            raise Refused(404, "There is no such customer.")
        return self.c.render(
            request,
            "search.html",
            400 if error else 200,
            title=f"Search · {found['name']}",
            customer=found,
            q=text,
            results=results.results if results else [],
            next_cursor=results.next if results else None,
            error=error,
        )

    @page
    async def conversation(self, request: Request) -> Response:
        conversation_id = _id(request.path_params["conversation"])
        cursor = _cursor(request.query_params.get("before"))

        def read(conn):
            found = data.conversation(conn, conversation_id)
            if found is None:
                return None, None
            return found, data.messages_page(conn, conversation_id, cursor, PAGE)

        found, messages = await self.c.read(read)
        if found is None:
            raise Refused(404, "There is no such conversation.")
        rows, next_cursor = messages
        return self.c.render(
            request,
            "conversation.html",
            title=f"Conversation {conversation_id}",
            conversation=found,
            rows=rows,
            next_cursor=next_cursor.text() if next_cursor else None,
        )


__all__ = ["Pages"]
