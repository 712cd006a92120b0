"""What an adapter is given: the request (:class:`WebhookRequest`), its headers and endpoint.

The receiver builds a :class:`WebhookRequest` from the ASGI request; an
adapter never sees the web framework. See :mod:`convdb.serve.adapters`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from ..config import DEFAULT_MAX_PAYLOAD_DEPTH
from ..queue import limits as queue_limits
from .rejection import Rejection

#: The default of the deepest nesting :meth:`WebhookRequest.json` accepts: the
#: queue's limit, ``CONVDB_MAX_PAYLOAD_DEPTH`` (:mod:`convdb.queue.limits`).
MAX_JSON_DEPTH = DEFAULT_MAX_PAYLOAD_DEPTH
#: Most fields :meth:`WebhookRequest.form` accepts.
MAX_FORM_FIELDS = 1000
#: Bodies above this many bytes are parsed off the event loop (:func:`off_loop`): a
#: form this size takes about a millisecond to decode, JSON less.
OFF_LOOP_ABOVE = 16 * 1024
FORM_TYPE = "application/x-www-form-urlencoded"


async def off_loop(size: int | None, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``, on a worker thread when ``size`` (the bytes it works on; None:
    unknown) is over :data:`OFF_LOOP_ABOVE`, so parsing a large body never stalls the
    other requests; small ones stay on the loop (a thread hop costs more than they do)."""
    if size is not None and size <= OFF_LOOP_ABOVE:
        return fn(*args)
    return await asyncio.to_thread(fn, *args)


class Headers(Mapping[str, str]):
    """Request headers: case-insensitive, read-only; repeated headers kept.

    ``headers["x"]`` and :meth:`get` give the first value, :meth:`get_all`
    every value. Names and values are decoded as Latin-1, as HTTP defines.
    """

    __slots__ = ("_first", "_items")

    def __init__(self, items: Iterable[tuple[str, str]]) -> None:
        self._items = [(name.lower(), value) for name, value in items]
        self._first: dict[str, str] = {}
        for name, value in self._items:
            self._first.setdefault(name, value)

    @classmethod
    def from_raw(cls, raw: Iterable[tuple[bytes, bytes]]) -> Headers:
        return cls((name.decode("latin-1"), value.decode("latin-1")) for name, value in raw)

    def __getitem__(self, name: str) -> str:
        return self._first[name.lower()]

    def get(self, name: str, default: Any = None) -> Any:
        return self._first.get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._first

    def __iter__(self):
        return iter(self._first)

    def __len__(self) -> int:
        return len(self._first)

    def get_all(self, name: str) -> list[str]:
        name = name.lower()
        return [value for n, value in self._items if n == name]

    def raw_items(self) -> list[tuple[str, str]]:
        """Every (lowercased name, value) pair, in order, repeats included."""
        return list(self._items)


@dataclass(frozen=True)
class Endpoint:
    """A receiving endpoint: its ``webhook_endpoints`` row and its provider's.

    ``secret_ref`` is ``providers.credentials_ref`` (where the secret lives,
    ``env:NAME`` or ``file:PATH``), never the secret itself. ``label`` names
    the endpoint in logs and metrics (``customer-key/provider-name``).
    """

    id: int
    adapter: str
    provider_id: int
    provider_kind: str
    provider_name: str
    customer_id: int
    customer_key: str | None
    customer_name: str
    secret_ref: str | None

    @property
    def label(self) -> str:
        return f"{self.customer_key or self.customer_id}/{self.provider_name}"

    @property
    def key_namespace(self) -> str:
        """Prefix of every idempotency key stored through this endpoint.

        The provider's id: every endpoint (URL) of one provider shares it, so a
        retry that arrives at a rotated URL is still recognised as a duplicate,
        while two providers never share keys.
        """
        return f"hook:{self.provider_id}:"


class WebhookRequest:
    """One request to an endpoint, as an adapter sees it.

    Attributes: ``method``; ``path`` (as received, token included);
    ``subpath`` (what follows the token, ``""`` or ``"/..."``); ``query``
    (the raw query string); ``headers`` (:class:`Headers`); ``url`` (the
    public URL the sender called, built from the configured public base URL,
    or from ``X-Forwarded-*`` sent by a trusted proxy, or from ``Host``);
    ``client`` (the sender's address, through a trusted proxy); ``endpoint``
    (:class:`Endpoint`); ``content_type`` (the media type, lowercased) and
    ``content_params`` (its parameters); ``max_body`` (the byte limit: the
    smaller of the adapter's and ``max_form`` for a form-encoded body);
    ``tolerance`` (seconds a signed timestamp may be away from now);
    ``secret_read`` (the secret :meth:`secret` read for this request, else
    None: the receiver keys the request's nonce by it, :mod:`convdb.serve.replay`).

    The body is read once, either whole with :meth:`body` or in chunks with
    :meth:`stream`; both stop with a 413 :class:`Rejection` past ``max_body``,
    and with a 408 when the whole body has not arrived ``body_timeout``
    seconds after the request began (a slow client cannot hold a request open).
    """

    def __init__(
        self,
        *,
        method: str,
        path: str,
        subpath: str,
        query: str,
        headers: Headers,
        url: str,
        client: str | None,
        endpoint: Endpoint,
        chunks: Callable[[], AsyncIterator[bytes]],
        secret: Callable[[], str],
        max_body: int,
        tolerance: float,
        reader: Callable[..., Any] | None = None,
        max_form: int | None = None,
        body_timeout: float | None = None,
    ) -> None:
        self.method = method
        self.path = path
        self.subpath = subpath
        self.query = query
        self.headers = headers
        self.url = url
        self.client = client
        self.endpoint = endpoint
        self.tolerance = tolerance
        self.content_type, self.content_params = parse_content_type(headers.get("content-type", ""))
        if max_form is not None and self.content_type == FORM_TYPE:
            max_body = min(max_body, max_form)
        self.max_body = max_body
        self.secret_read: str | None = None
        self.body_complete = False
        self._deadline = None if body_timeout is None else time.monotonic() + body_timeout
        self._body_timeout = body_timeout
        self._chunks = chunks
        self._secret = secret
        self._reader = reader
        self._consumed = False
        self._body: bytes | None = None

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("content-length")
        return int(value) if value is not None and value.isdigit() else None

    def now(self) -> float:
        """Unix time in seconds (a method, so tests and adapters agree on the clock)."""
        return time.time()

    def secret(self) -> str:
        """The endpoint's secret, read from its reference (once per request, never
        cached across requests: a rotated secret needs no restart).

        Raises :class:`convdb.serve.secrets.SecretUnavailable` (the receiver
        answers 503 with ``Retry-After`` and logs which reference failed, never
        a value).
        """
        if self.secret_read is None:
            self.secret_read = self._secret()
        return self.secret_read

    async def read(self, fn: Callable[[Any], Any], *, timeout: float = 5.0) -> Any:
        """``fn(connection)`` run on the receiver's reading connection (a psycopg2
        connection, in a thread), for a lookup such as the customer owning a number.

        Raises :class:`convdb.serve.pg.Unavailable` when the database is away (the
        receiver answers 503). Keep ``fn`` to one short, indexed ``SELECT``.
        """
        if self._reader is None:
            raise RuntimeError("this request has no database reader")
        return await self._reader(fn, timeout=timeout)

    async def stream(self) -> AsyncIterator[bytes]:
        """The body in chunks as they arrive; a 413 :class:`Rejection` past ``max_body``,
        a 408 past the body timeout."""
        if self._consumed:
            raise RuntimeError("the request body was already read")
        self._consumed = True
        seen = 0
        chunks = self._chunks().__aiter__()
        while True:
            try:
                if self._deadline is None:
                    chunk = await anext(chunks)
                else:
                    async with asyncio.timeout_at(_loop_deadline(self._deadline)):
                        chunk = await anext(chunks)
            except StopAsyncIteration:
                break
            except TimeoutError:
                raise Rejection.malformed(
                    "body_timeout",
                    f"the body did not arrive within {self._body_timeout:g} s",
                    status=408,
                ) from None
            seen += len(chunk)
            if seen > self.max_body:
                raise Rejection.too_large(f"the body is over {self.max_body} bytes")
            if chunk:
                yield chunk
        self.body_complete = True

    async def body(self) -> bytes:
        """The whole body (read once, then cached)."""
        if self._body is None:
            self._body = b"".join([chunk async for chunk in self.stream()])
        return self._body

    def json(self, body: bytes) -> Any:
        """``body`` parsed as JSON; a malformed :class:`Rejection` when it is not.

        Refuses invalid UTF-8, nesting deeper than the queue's limit
        (``CONVDB_MAX_PAYLOAD_DEPTH``, checked on the text before parsing, plus
        one level for the envelope that holds a payload), and NaN/Infinity
        (which PostgreSQL's ``jsonb`` cannot store).
        """
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise Rejection.malformed("bad_json", "the body is not UTF-8") from None
        depth = queue_limits.configured().depth + 1
        if queue_limits.too_deep(text, depth):
            raise Rejection.malformed(
                "bad_json", f"JSON nested deeper than {depth} levels (CONVDB_MAX_PAYLOAD_DEPTH)"
            )
        try:
            doc = json.loads(text, parse_constant=_refuse_constant)
        except (ValueError, RecursionError) as exc:
            if isinstance(exc, RecursionError):
                detail = "too deeply nested"
            else:
                detail = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            raise Rejection.malformed("bad_json", f"the body is not JSON ({detail})") from None
        return doc

    def form(self, body: bytes) -> list[tuple[str, str]]:
        """``body`` as ``application/x-www-form-urlencoded`` pairs, in order.

        A malformed :class:`Rejection` for invalid UTF-8 or more than
        :data:`MAX_FORM_FIELDS` fields. Blank values are kept.
        """
        try:
            return parse_qsl(
                body.decode("ascii"),
                keep_blank_values=True,
                strict_parsing=False,
                encoding="utf-8",
                errors="strict",
                max_num_fields=MAX_FORM_FIELDS,
            )
        except UnicodeDecodeError:
            raise Rejection.malformed("bad_form", "the form is not valid UTF-8") from None
        except ValueError:
            raise Rejection.malformed(
                "bad_form", f"the form has more than {MAX_FORM_FIELDS} fields"
            ) from None

    def basic_auth(self) -> tuple[str, str] | None:
        """``(user, password)`` from an ``Authorization: Basic`` header, or None.

        Compare them with :func:`hmac.compare_digest`, never ``==``.
        """
        value = self.headers.get("authorization", "")
        scheme, _, encoded = value.partition(" ")
        if scheme.lower() != "basic" or not encoded:
            return None
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (ValueError, binascii.Error):  # not base64 (or not ASCII), not UTF-8
            return None
        user, sep, password = decoded.partition(":")
        return (user, password) if sep else None


def parse_content_type(value: str) -> tuple[str, dict[str, str]]:
    """``("multipart/form-data", {"boundary": "x"})`` from a ``Content-Type`` value."""
    media, *params = value.split(";")
    parsed: dict[str, str] = {}
    for param in params[:20]:
        name, sep, val = param.partition("=")
        if sep:
            parsed[name.strip().lower()] = val.strip().strip('"')
    return media.strip().lower(), parsed


def json_depth(doc: Any) -> int:
    """How deeply ``doc`` nests (a scalar is 0), without recursion; counting stops
    past :data:`MAX_JSON_DEPTH`. (On text, :func:`convdb.queue.limits.too_deep`.)"""
    deepest = 0
    todo = [(doc, 1)]
    while todo:
        value, depth = todo.pop()
        if isinstance(value, dict):
            values = value.values()
        elif isinstance(value, list):
            values = value
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_JSON_DEPTH:
            return deepest
        todo.extend((v, depth + 1) for v in values)
    return deepest


def _loop_deadline(monotonic_deadline: float) -> float:
    """A :func:`time.monotonic` deadline on the running loop's clock."""
    loop = asyncio.get_running_loop()
    return loop.time() + (monotonic_deadline - time.monotonic())


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


__all__ = [
    "FORM_TYPE",
    "MAX_FORM_FIELDS",
    "MAX_JSON_DEPTH",
    "OFF_LOOP_ABOVE",
    "Endpoint",
    "Headers",
    "WebhookRequest",
    "json_depth",
    "off_loop",
    "parse_content_type",
]
