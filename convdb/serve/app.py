"""The receiver as an ASGI application: ``create_app()``.

::

    from convdb.serve.app import create_app

    app = create_app()   # DATABASE_URL (or .env, or the embedded server)
    # run it:   uvicorn --factory convdb.serve.app:create_app
    # or mount it in your own Starlette/FastAPI app:
    #   routes=[Mount("/convdb", app=create_app(url))]

Routes: ``POST /hooks/{token}`` (and ``/hooks/{token}/{event_type}``) for
webhooks, ``GET /healthz`` (200 when the database answers, else 503; its
JSON also says whether the attachment store can be written and, with
``CONVDB_READ_URL``, how far behind each replica is: ``"status": "degraded"``,
still 200, when the store cannot be written or a replica lags more than
``CONVDB_READ_MAX_LAG`` or cannot be reached) and
``GET /metrics`` (Prometheus text). Every request is logged as one line on
the logger ``convdb.serve.access``, the token masked.

A 2xx means the event becomes data: before the answer, every event is
accepted as ``enqueue`` and the worker accept it (:mod:`convdb.queue.acceptance`:
the queue's limits, a handled event type, the type's validator), or refused
with the adapter's "do not retry" code and a detail naming the field.

A fault that an operator or a retry can cure (the database away, a secret
reference that cannot be read, an attachment store that cannot be written,
an adapter that is not installed) answers 503 with ``Retry-After``, after
authentication where the scheme allows it, and is logged once per endpoint
and cause (again only after it was cured). A 500 is a bug, logged with its
traceback.

A mounted app's lifespan is not run by every host framework: the receiver
starts its writer and connections on first use anyway, and its lifespan
(when run) closes them after the requests in flight are answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from ..attachments import StoreUnavailable, get_store, load_attachment_settings
from ..config import load_settings
from ..db import resolve_url
from ..exceptions import ConfigError, PayloadError, QueueError
from ..plugins import discover
from ..queue.acceptance import Acceptance
from ..replicas import ReplicaMonitor
from . import metrics
from .adapters import (
    Adapter,
    Batch,
    Headers,
    Outcome,
    Refused,
    Rejection,
    WebhookRequest,
    WebhookResponse,
)
from .endpoints import PATH_PREFIX, Directory, read_all
from .groupcommit import GroupWriter
from .pg import Unavailable
from .reader import Reader, ping, queue_depth
from .rejection import refused
from .replay import ReplayScopes
from .request import off_loop
from .secrets import SecretUnavailable, read_secret
from .settings import ServeSettings, load_serve_settings
from .urls import client_address, public_url

log = logging.getLogger("convdb.serve")
access_log = logging.getLogger("convdb.serve.access")

STATE_KEY = "convdb.serve"
#: Seconds /healthz waits for the attachment store to create a file.
STORE_CHECK_TIMEOUT = 2.0


class Receiver:
    """The receiver's parts in one process: adapters, endpoints, writer, reader."""

    def __init__(
        self,
        url: str,
        settings: ServeSettings,
        adapters: dict[str, Adapter] | None = None,
        writer: Callable[..., GroupWriter] = GroupWriter,
        acceptance: Acceptance | None = None,
    ) -> None:
        self.settings = settings
        self._adapters = adapters
        self._acceptance = acceptance
        self.reader = Reader(url)
        self.writer = writer(
            url,
            max_group=settings.max_group,
            statement_timeout=settings.commit_timeout,
            on_group=lambda rows, _seconds: metrics.GROUP_ROWS.observe(rows),
        )
        self.directory = Directory(lambda: self.reader.run(read_all), refresh=settings.refresh)
        self.replay = ReplayScopes(self.reader.run)
        self._faults: dict[str, str] = {}  # endpoint label -> the fault last logged
        self._store_settings = None
        # Replicas are only looked at, for /healthz: nothing here reads from them.
        config = load_settings()
        self.replicas = ReplicaMonitor(config.read_url, config.read_max_lag)

    @property
    def adapters(self) -> dict[str, Adapter]:
        if self._adapters is None:
            self._load()
        return self._adapters

    @property
    def acceptance(self) -> Acceptance:
        """What this receiver accepts (:mod:`convdb.queue.acceptance`): the installed
        plugins' handled types and validators, from the same discovery as the adapters."""
        if self._acceptance is None:
            self._load()
        return self._acceptance

    def _load(self) -> None:
        from .registry import load

        found = discover()
        if self._adapters is None:
            self._adapters = load(found)
        if self._acceptance is None:
            self._acceptance = Acceptance.installed(found)

    def _accepted(self, delivery, key: str) -> str:
        """The stored text of ``delivery``, accepted as ``enqueue`` and the worker would
        (repaired by its validator, maybe); a :class:`Rejection` naming the field."""
        try:
            accepted = self.acceptance.accept(delivery.event_type, delivery.payload, key)
        except (PayloadError, QueueError) as exc:
            raise refused(exc) from None
        return accepted.text

    async def startup(self) -> None:
        self.writer.start()
        log.info("webhook adapters: %s", ", ".join(sorted(self.adapters)) or "none")
        log.info("event types accepted: %s", ", ".join(sorted(self.acceptance.handled)) or "none")
        try:
            await self.directory.lookup("0" * 43)  # reads the endpoints now
        except Unavailable as exc:
            log.warning("database unavailable at start (answering 503 until it is back): %s", exc)

    async def shutdown(self) -> None:
        # Bounded whatever the database does: a call it never answers is aborted.
        await asyncio.to_thread(self.writer.close, self.settings.commit_timeout)
        await asyncio.to_thread(self.reader.close, 3.0)
        metrics.mark_process_dead(os.getpid())

    # --- routes -------------------------------------------------------------------

    async def webhook(self, request: Request) -> Response:
        started = time.perf_counter()
        info = request.scope.setdefault(STATE_KEY, {})
        label, outcome, reason = "-", "rejected", ""
        try:
            answer, label, outcome, reason = await self._webhook(request)
        except Exception:
            log.exception("webhook request failed")
            answer, reason = _error(500, "internal_error"), "internal_error"
        info.update(endpoint=label, outcome=outcome, reason=reason)
        metrics.WEBHOOKS.labels(label, outcome, reason).inc()
        metrics.DURATION.labels(outcome).observe(time.perf_counter() - started)
        headers = dict(answer.headers)
        if answer.status >= 300 and not info.get("body_complete"):
            headers["connection"] = "close"  # the rest of the body is never read
        return Response(
            answer.body,
            status_code=answer.status,
            media_type=answer.content_type,
            headers=headers,
        )

    async def _webhook(self, request: Request) -> tuple[WebhookResponse, str, str, str]:
        scope = request.scope
        settings = self.settings
        if sum(len(k) + len(v) for k, v in scope["headers"]) > settings.max_headers:
            return _error(431, "headers_too_large"), "-", "rejected", "headers_too_large"
        try:
            endpoint = await self.directory.lookup(request.path_params["token"])
        except Unavailable:
            return self._unavailable(), "-", "rejected", "database_unavailable"
        if endpoint is None:
            return _error(404, "unknown_endpoint"), "-", "rejected", "unknown_endpoint"
        label = endpoint.label
        adapter = self.adapters.get(endpoint.adapter)
        if adapter is None:
            self._fault(label, f"the adapter {endpoint.adapter!r} is not installed")
            return self._unavailable("adapter_missing"), label, "rejected", "adapter_missing"
        headers = Headers.from_raw(scope["headers"])
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or len(length) > 15):
            return _error(400, "bad_content_length"), label, "rejected", "bad_content_length"
        wreq = WebhookRequest(
            method=request.method,
            path=scope["path"],
            subpath="/" + request.path_params.get("rest", "")
            if "rest" in request.path_params
            else "",
            query=scope.get("query_string", b"").decode("latin-1"),
            headers=headers,
            url=public_url(scope, headers, settings),
            client=client_address(scope, headers, settings),
            endpoint=endpoint,
            chunks=request.stream,
            secret=lambda: _secret(endpoint.secret_ref),
            max_body=adapter.max_body or settings.max_body,
            tolerance=settings.tolerance,
            reader=self.reader.run,
            max_form=settings.max_form_body,
            body_timeout=settings.body_timeout,
        )
        try:
            answer, outcome, reason = await self._receive(adapter, wreq)
        finally:
            scope[STATE_KEY]["body_complete"] = wreq.body_complete
        return answer, label, outcome, reason

    async def _receive(
        self, adapter: Adapter, wreq: WebhookRequest
    ) -> tuple[WebhookResponse, str, str]:
        endpoint, label, settings = wreq.endpoint, wreq.endpoint.label, self.settings
        try:
            if wreq.content_length is not None and wreq.content_length > wreq.max_body:
                raise Rejection.too_large(f"the body is over {wreq.max_body} bytes")
            delivery = await adapter.receive(wreq)
            if isinstance(delivery, Batch):
                return await self._store_batch(adapter, wreq, delivery)
            key = endpoint.key_namespace + delivery.idempotency_key
            # Every rule the worker applies for good, before the answer: the
            # acceptance enqueue and the worker use (off the loop when large).
            text = await off_loop(wreq.content_length, self._accepted, delivery, key)
            scope = None
            if delivery.nonce is not None:  # spent once per signing key (replay.py)
                scope = await self.replay.scope(endpoint.id, wreq.secret_read)
            status = await self.writer.store(
                endpoint.id,
                key,
                delivery,
                timeout=settings.commit_timeout,
                nonce_scope=scope,
                text=text,
            )
        except Rejection as rejection:
            return adapter.refuse(wreq, rejection), "rejected", rejection.reason
        except SecretUnavailable as exc:
            self._fault(label, exc.message)
            return self._unavailable("secret_unavailable"), "rejected", "secret_unavailable"
        except StoreUnavailable as exc:
            self._fault(label, exc.message)
            reason = "attachment_store_unavailable"
            return self._unavailable(reason), "rejected", reason
        except Unavailable:  # logged once per outage by the writer
            return self._unavailable(), "rejected", "database_unavailable"
        except ClientDisconnect:
            return _error(400, "client_disconnected"), "rejected", "client_disconnected"
        except Exception:
            log.exception("endpoint %s: adapter %r failed", label, endpoint.adapter)
            return _error(500, "adapter_error"), "rejected", "adapter_error"
        if self._faults.pop(label, None) is not None:
            log.warning("endpoint %s: storing again", label)
        answer = adapter.respond(wreq, Outcome(status, endpoint, key))
        return answer, ("accepted" if status == "stored" else "duplicate"), ""

    async def _store_batch(
        self, adapter: Adapter, wreq: WebhookRequest, batch: Batch
    ) -> tuple[WebhookResponse, str, str]:
        """Store a batch's events in one group; each event is stored or refused alone.

        Every refused event is logged and counted (``outcome="refused_event"``),
        and its record (when the adapter made one) stored with the batch; the
        request gets 2xx once each event is one or the other.
        """
        endpoint, label = wreq.endpoint, wreq.endpoint.label
        keys = [endpoint.key_namespace + d.idempotency_key for d in batch.deliveries]
        records = [r.record for r in batch.refused if r.record is not None]
        record_keys = [endpoint.key_namespace + d.idempotency_key for d in records]
        results = await self.writer.store_many(
            endpoint.id,
            list(zip(keys + record_keys, [*batch.deliveries, *records], strict=True)),
            timeout=self.settings.commit_timeout,
            size=wreq.content_length,
            accept=self._accepted,  # each event as enqueue and the worker accept it
        )
        results = results[: len(keys)]  # the records' own results are not the events'
        indexes = batch.indexes or tuple(range(len(batch.deliveries)))
        outcomes: list[Outcome | Refused] = list(batch.refused)
        for index, key, result in zip(indexes, keys, results, strict=True):
            if isinstance(result, Rejection):
                outcomes.append(Refused(index, result.reason, result.detail))
            else:
                outcomes.append(Outcome(result, endpoint, key))
        for outcome in outcomes:
            if isinstance(outcome, Refused):
                log.info(
                    "endpoint %s: event %d of a batch refused: %s %s",
                    label,
                    outcome.index,
                    outcome.reason,
                    outcome.detail[:200],
                )
                metrics.WEBHOOKS.labels(label, "refused_event", outcome.reason).inc()
        if self._faults.pop(label, None) is not None:
            log.warning("endpoint %s: storing again", label)
        statuses = {o.status for o in outcomes if isinstance(o, Outcome)}
        answer = adapter.respond_batch(wreq, batch, outcomes)
        if "stored" in statuses:
            return answer, "accepted", ""
        if statuses:
            return answer, "duplicate", ""
        return answer, "rejected", "every_event_refused"

    def _fault(self, label: str, cause: str) -> None:
        """Log a curable fault of an endpoint once, until it changes or is cured."""
        if self._faults.get(label) != cause:
            self._faults[label] = cause
            log.error("endpoint %s: %s (answering 503 until it is fixed)", label, cause)

    def _unavailable(self, reason: str = "database_unavailable") -> WebhookResponse:
        return _error(503, reason, [("retry-after", str(self.settings.retry_after))])

    async def healthz(self, request: Request) -> Response:
        """200 when the database answers, else 503 with ``Retry-After``; the JSON says
        ``"attachment_store": "ok"`` or ``"unavailable"`` (then ``"status": "degraded"``:
        email with files gets 503 until it is fixed, everything else is stored)."""
        try:
            await self.reader.run(ping, timeout=3.0)
        except Unavailable:
            answer = self._unavailable()
            return Response(answer.body, 503, dict(answer.headers), answer.content_type)
        store = await self._store_health()
        doc = {
            "status": "ok" if store == "ok" else "degraded",
            "database": "ok",
            "attachment_store": store,
        }
        if self.replicas.url is not None:
            doc.update(await self._replica_health())
        return Response(json.dumps(doc).encode(), 200, media_type="application/json")

    async def _replica_health(self) -> dict:
        """The replicas' part of /healthz: each host as last seen, and why it is degraded."""
        try:
            states = await asyncio.wait_for(asyncio.to_thread(self.replicas.states), 5.0)
            reasons = self.replicas.degraded(states)
        except TimeoutError:
            states, reasons = [], ["the replicas did not answer within 5 s"]
        found: dict = {"replicas": [state.as_json() for state in states]}
        if reasons:
            found.update(status="degraded", degraded=reasons)
        return found

    async def _store_health(self) -> str:
        try:
            if self._store_settings is None:  # read once, as the adapters do
                self._store_settings = load_attachment_settings()
            store = get_store(self._store_settings)
            await asyncio.wait_for(asyncio.to_thread(store.check), STORE_CHECK_TIMEOUT)
        except (StoreUnavailable, ConfigError, TimeoutError) as exc:
            cause = str(exc) or f"no answer to the health check within {STORE_CHECK_TIMEOUT:g} s"
            if self._faults.get("attachment store") != cause:
                self._faults["attachment store"] = cause
                log.error("attachment store: %s", cause)
            return "unavailable"
        self._faults.pop("attachment store", None)
        return "ok"

    async def metrics(self, request: Request) -> Response:
        metrics.PENDING.set(self.writer.depth)
        with contextlib.suppress(Unavailable):
            metrics.QUEUE_DEPTH.set(await self.reader.run(queue_depth, timeout=2.0))
        body, content_type = metrics.render()
        return Response(body, 200, media_type=content_type)


def _secret(ref: str | None) -> str:
    if not ref:
        raise SecretUnavailable("the endpoint's provider has no credentials_ref")
    return read_secret(ref)


def _error(status: int, reason: str, headers=()) -> WebhookResponse:
    return WebhookResponse.json(status, {"error": reason}, headers)


class AccessLog:
    """ASGI middleware: one log line per request, the endpoint token masked."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            info = scope.get(STATE_KEY, {})
            access_log.info(
                "%s %s %s %d %s%s%s %.1fms",
                scope.get("client", ("-",))[0] if scope.get("client") else "-",
                scope["method"],
                mask_path(scope.get("path", "")),
                status,
                info.get("outcome", "-"),
                f" {info['reason']}" if info.get("reason") else "",
                f" endpoint={info['endpoint']}" if info.get("endpoint", "-") != "-" else "",
                (time.perf_counter() - started) * 1000,
            )


def mask_path(path: str) -> str:
    """``/hooks/AbCdEf...`` for any path under the webhook prefix (the token is a credential)."""
    at = path.find(PATH_PREFIX)
    if at < 0:
        return path[:200]
    token, _, rest = path[at + len(PATH_PREFIX) :].partition("/")
    shown = path[: at + len(PATH_PREFIX)] + token[:6] + ("..." if len(token) > 6 else "")
    return (shown + ("/" + rest if rest else ""))[:200]


def create_app(
    url: str | None = None,
    *,
    settings: ServeSettings | None = None,
    adapters: dict[str, Adapter] | None = None,
    writer: Callable[..., GroupWriter] = GroupWriter,
    acceptance: Acceptance | None = None,
) -> Starlette:
    """The receiver's ASGI app on ``url`` (default: ``DATABASE_URL``, ``.env``, embedded).

    ``settings`` default to :func:`~convdb.serve.settings.load_serve_settings`
    and ``adapters`` to every installed plugin's, as does ``acceptance`` (the
    event types and validators, :mod:`convdb.queue.acceptance`); ``writer``
    builds the process's writer (the benchmarks swap in a one-commit-per-request one).
    """
    settings = settings or load_serve_settings()
    url = url or resolve_url()
    receiver = Receiver(url, settings, adapters, writer, acceptance)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await receiver.startup()
        yield
        await receiver.shutdown()

    app = Starlette(
        routes=[
            Route(PATH_PREFIX + "{token}", receiver.webhook, methods=["POST"]),
            Route(PATH_PREFIX + "{token}/{rest:path}", receiver.webhook, methods=["POST"]),
            Route("/healthz", receiver.healthz, methods=["GET"]),
            Route("/metrics", receiver.metrics, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.add_middleware(AccessLog)
    app.state.receiver = receiver
    return app


__all__ = ["AccessLog", "Receiver", "create_app", "mask_path"]
