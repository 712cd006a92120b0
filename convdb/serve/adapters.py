"""The adapter interface: how one webhook request becomes one stored event.

An adapter knows one sender's scheme. The receiver routes a request to an
endpoint (the unguessable token in the path), hands the adapter a
:class:`WebhookRequest` (never a framework object), and stores the
:class:`Delivery` the adapter returns, durably, before it answers 2xx. An
adapter refuses a request by raising :class:`Rejection`::

    import hmac, hashlib
    from convdb.serve import Adapter, Delivery, Rejection

    class Acme(Adapter):
        name = "acme"
        malformed_status = 406              # what Acme documents as "do not retry"

        async def receive(self, request):
            body = await request.body()     # bounded: over the limit is a 413
            key = request.secret().encode() # read now: a rotated secret needs no restart
            given = request.headers.get("x-acme-signature", "")
            wanted = hmac.new(key, request.url.encode() + body, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(given, wanted):
                raise Rejection.unauthorized("bad_signature")
            doc = request.json(body)        # depth- and type-checked, else a 400
            return Delivery("message.received", to_canonical(doc), idempotency_key=doc["id"])

    # the plugin registers it, like the core registers "standard":
    plugin = Plugin(name="acme", adapters={"acme": "convdb_acme:Acme"})

What the receiver does around :meth:`Adapter.receive`:

- 404 before any adapter runs when the token names no endpoint; 413 when
  ``Content-Length`` is over :attr:`Adapter.max_body` (or the server's
  limit); 431 on oversized headers.
- The idempotency key is namespaced by the endpoint's provider, so two
  providers never share keys; a redelivery (same key) is answered 2xx and stored once.
- A :class:`Delivery` with a ``nonce`` (a one-time value such as Mailgun's
  ``token``) is refused as a replay when the nonce was already used by a
  delivery with another key; the nonce is stored in the same transaction as
  the event, so it is consumed exactly when the event is.
- :meth:`Adapter.respond` builds the 2xx answer (after the commit) and
  :meth:`Adapter.refuse` the answer to a :class:`Rejection`, so an adapter can
  speak its provider's dialect (an empty TwiML document, a 406).

Adapters are created once per server process and shared by concurrent
requests: keep per-request state in locals, not on ``self``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import parse_qsl

from ..plugins import EVENT_TYPE_RE

#: Longest idempotency key an adapter may return (before the endpoint namespace).
MAX_KEY_LENGTH = 256
MAX_NONCE_LENGTH = 256
MAX_EVENT_TYPE_LENGTH = 100
#: Deepest nesting :meth:`WebhookRequest.json` accepts.
MAX_JSON_DEPTH = 64
#: Most fields :meth:`WebhookRequest.form` accepts.
MAX_FORM_FIELDS = 1000
REASON_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_KEY_RE = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no spaces


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


class Rejection(Exception):
    """An adapter's refusal of a request; nothing is stored.

    ``kind`` is ``"unauthorized"`` (401 unless the adapter says otherwise),
    ``"malformed"`` (400, or :attr:`Adapter.malformed_status`) or
    ``"too_large"`` (413). ``reason`` is a short label (lowercase letters,
    digits, ``_``) used in the log line, the metrics and the answer;
    ``detail`` is a sentence for the sender and the log: never put a secret
    in either. ``status`` overrides the adapter's code for this one answer.
    """

    KINDS = ("unauthorized", "malformed", "too_large")

    def __init__(
        self, kind: str, reason: str, detail: str = "", *, status: int | None = None
    ) -> None:
        if kind not in self.KINDS:
            raise ValueError(f"Rejection kind must be one of {self.KINDS}, not {kind!r}")
        if not REASON_RE.match(reason):
            raise ValueError(f"Rejection reason must match {REASON_RE.pattern}, not {reason!r}")
        if status is not None and not 400 <= status <= 499:
            raise ValueError(f"Rejection status must be a 4xx code, not {status!r}")
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.kind = kind
        self.reason = reason
        self.detail = detail[:300]
        self.status = status

    @classmethod
    def unauthorized(cls, reason: str, detail: str = "", *, status: int | None = None):
        return cls("unauthorized", reason, detail, status=status)

    @classmethod
    def malformed(cls, reason: str, detail: str = "", *, status: int | None = None):
        return cls("malformed", reason, detail, status=status)

    @classmethod
    def too_large(cls, detail: str = "") -> Rejection:
        return cls("too_large", "too_large", detail)


@dataclass(frozen=True)
class Delivery:
    """What an adapter wants stored: one event for ``inbound_events``.

    ``idempotency_key`` is the sender's own id of the delivery (Standard
    Webhooks' ``webhook-id``, Twilio's ``MessageSid``); the receiver prefixes
    it with the endpoint's namespace. ``nonce`` is an optional one-time value
    remembered for ``nonce_ttl`` seconds (make it longer than the adapter's
    timestamp tolerance): reused with another key, the request is refused as
    a replay (401, ``reason="replayed"``).
    """

    event_type: str
    payload: dict
    idempotency_key: str
    nonce: str | None = None
    nonce_ttl: float = 86_400.0

    def __post_init__(self) -> None:
        if (
            not isinstance(self.event_type, str)
            or len(self.event_type) > MAX_EVENT_TYPE_LENGTH
            or not EVENT_TYPE_RE.match(self.event_type)
        ):
            raise Rejection.malformed("bad_event_type", "the event type is not a valid name")
        if not isinstance(self.payload, dict):
            raise Rejection.malformed("bad_payload", "the event payload must be a JSON object")
        check_key(self.idempotency_key, "idempotency key", MAX_KEY_LENGTH)
        if self.nonce is not None:
            check_key(self.nonce, "nonce", MAX_NONCE_LENGTH)
            if not 0 < float(self.nonce_ttl) <= 30 * 86_400:
                raise ValueError("nonce_ttl must be between 0 and 30 days")


def check_key(value: object, what: str, limit: int) -> str:
    """``value`` if it is 1-``limit`` printable ASCII characters without spaces.

    Otherwise a malformed :class:`Rejection` (reason ``bad_key``).
    """
    if not isinstance(value, str) or not value:
        raise Rejection.malformed("bad_key", f"the {what} is missing")
    if len(value) > limit:
        raise Rejection.malformed("bad_key", f"the {what} is longer than {limit} characters")
    if not _KEY_RE.match(value):
        raise Rejection.malformed("bad_key", f"the {what} must be printable ASCII without spaces")
    return value


@dataclass(frozen=True)
class Outcome:
    """What storing a delivery came to: ``"stored"`` or ``"duplicate"`` (already there)."""

    status: str
    endpoint: Endpoint
    idempotency_key: str


@dataclass(frozen=True)
class WebhookResponse:
    """An answer, built by an adapter and sent by the receiver."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def json(cls, status: int, document: Any, headers=()) -> WebhookResponse:
        body = json.dumps(document, separators=(",", ":")).encode()
        return cls(status, body, "application/json", tuple(headers))


class WebhookRequest:
    """One request to an endpoint, as an adapter sees it.

    Attributes: ``method``; ``path`` (as received, token included);
    ``subpath`` (what follows the token, ``""`` or ``"/..."``); ``query``
    (the raw query string); ``headers`` (:class:`Headers`); ``url`` (the
    public URL the sender called, built from the configured public base URL,
    or from ``X-Forwarded-*`` sent by a trusted proxy, or from ``Host``);
    ``client`` (the sender's address, through a trusted proxy); ``endpoint``
    (:class:`Endpoint`); ``content_type`` (the media type, lowercased) and
    ``content_params`` (its parameters); ``max_body`` (the byte limit);
    ``tolerance`` (seconds a signed timestamp may be away from now).

    The body is read once, either whole with :meth:`body` or in chunks with
    :meth:`stream`; both stop with a 413 :class:`Rejection` past ``max_body``.
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
    ) -> None:
        self.method = method
        self.path = path
        self.subpath = subpath
        self.query = query
        self.headers = headers
        self.url = url
        self.client = client
        self.endpoint = endpoint
        self.max_body = max_body
        self.tolerance = tolerance
        self.content_type, self.content_params = parse_content_type(headers.get("content-type", ""))
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
        """The endpoint's secret, read from its reference now (never cached).

        Raises :class:`convdb.serve.secrets.SecretUnavailable` (the receiver
        answers 500 and logs which reference failed, never a value).
        """
        return self._secret()

    async def read(self, fn: Callable[[Any], Any], *, timeout: float = 5.0) -> Any:
        """``fn(connection)`` run on the receiver's reading connection (a psycopg2
        connection, in a thread); for lookups such as the customer owning a number.

        Raises :class:`convdb.serve.pg.Unavailable` when the database is away (the
        receiver answers 503). Keep ``fn`` to one short, indexed ``SELECT``.
        """
        if self._reader is None:
            raise RuntimeError("this request has no database reader")
        return await self._reader(fn, timeout=timeout)

    async def stream(self) -> AsyncIterator[bytes]:
        """The body in chunks as they arrive; a 413 :class:`Rejection` past ``max_body``."""
        if self._consumed:
            raise RuntimeError("the request body was already read")
        self._consumed = True
        seen = 0
        async for chunk in self._chunks():
            seen += len(chunk)
            if seen > self.max_body:
                raise Rejection.too_large(f"the body is over {self.max_body} bytes")
            if chunk:
                yield chunk

    async def body(self) -> bytes:
        """The whole body (read once, then cached)."""
        if self._body is None:
            self._body = b"".join([chunk async for chunk in self.stream()])
        return self._body

    def json(self, body: bytes) -> Any:
        """``body`` parsed as JSON; a malformed :class:`Rejection` when it is not.

        Refuses invalid UTF-8, nesting deeper than :data:`MAX_JSON_DEPTH`,
        and NaN/Infinity (which PostgreSQL's ``jsonb`` cannot store).
        """
        try:
            doc = json.loads(body.decode("utf-8"), parse_constant=_refuse_constant)
        except UnicodeDecodeError:
            raise Rejection.malformed("bad_json", "the body is not UTF-8") from None
        except (ValueError, RecursionError) as exc:
            if isinstance(exc, RecursionError):
                detail = "too deeply nested"
            else:
                detail = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            raise Rejection.malformed("bad_json", f"the body is not JSON ({detail})") from None
        if json_depth(doc) > MAX_JSON_DEPTH:
            raise Rejection.malformed("bad_json", f"JSON nested deeper than {MAX_JSON_DEPTH}")
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
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, sep, password = decoded.partition(":")
        return (user, password) if sep else None


class Adapter:
    """Base class of adapters; subclasses implement :meth:`receive`.

    Class attributes an adapter may set:

    ``name``
        Informational; the registry key in ``Plugin(adapters=...)`` is what
        endpoints name.
    ``description``
        One line shown by ``convdb providers adapters``.
    ``unauthorized_status`` / ``malformed_status``
        The codes for :class:`Rejection` kinds (defaults 401 and 400): a
        provider that stops retrying only on a specific code gets that code.
    ``max_body``
        Byte limit of this adapter's bodies; ``None`` uses the server's
        (``CONVDB_SERVE_MAX_BODY``). Raise it for providers that post
        attachments, and read those bodies with :meth:`WebhookRequest.stream`.
    ``needs_secret``
        False for adapters that authenticate by the path token alone.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    unauthorized_status: ClassVar[int] = 401
    malformed_status: ClassVar[int] = 400
    max_body: ClassVar[int | None] = None
    needs_secret: ClassVar[bool] = True

    async def receive(self, request: WebhookRequest) -> Delivery:
        """Authenticate and parse ``request``; a :class:`Delivery` or a :class:`Rejection`."""
        raise NotImplementedError

    def respond(self, request: WebhookRequest, outcome: Outcome) -> WebhookResponse:
        """The 2xx answer once ``outcome`` is committed (default: 200 with JSON)."""
        return WebhookResponse.json(200, {"status": outcome.status})

    def refuse(self, request: WebhookRequest | None, rejection: Rejection) -> WebhookResponse:
        """The answer to ``rejection`` (default: the kind's code with JSON)."""
        return WebhookResponse.json(
            self.status_for(rejection), {"error": rejection.reason, "detail": rejection.detail}
        )

    def status_for(self, rejection: Rejection) -> int:
        if rejection.status is not None:
            return rejection.status
        if rejection.kind == "unauthorized":
            return self.unauthorized_status
        if rejection.kind == "malformed":
            return self.malformed_status
        return 413


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
    """How deeply ``doc`` nests (a scalar is 0), without recursion."""
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


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


__all__ = [
    "MAX_FORM_FIELDS",
    "MAX_JSON_DEPTH",
    "MAX_KEY_LENGTH",
    "Adapter",
    "Delivery",
    "Endpoint",
    "Headers",
    "Outcome",
    "Rejection",
    "WebhookRequest",
    "WebhookResponse",
    "check_key",
    "json_depth",
    "parse_content_type",
]
