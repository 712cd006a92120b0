"""``multipart/form-data`` read as a stream: fields kept, files written to the store.

:func:`read_form` feeds the request's chunks, as they arrive, to
``python-multipart``'s push parser. A part with a file name goes straight
into an attachment writer (:class:`convdb.attachments.Staging`), a chunk at
a time, so a 25 MB attachment never sits in memory whole; any other part is
a field, kept as bytes (its charset is the caller's business: SendGrid names
it in ``charsets``). Large bodies are parsed on a worker thread so the
event loop keeps answering other requests while the bytes go to disk.

Limits: fields of at most ``max_field`` bytes, at most ``max_parts`` parts,
each attachment within the store's limit (413), the body within the
request's (413). A body that is not well-formed multipart is a malformed
:class:`~convdb.serve.adapters.Rejection`.

When the store cannot be written (:class:`~convdb.attachments.StoreUnavailable`),
the rest of the body is still read, its files discarded, and the error
raised at the end; with ``store_errors="keep"`` it is kept in
:attr:`Form.store_error` instead, for an adapter whose signature comes
inside the form (Mailgun): a forged request then gets its 401, an authentic
one the 503 (:meth:`Form.check_store`).
"""

from __future__ import annotations

import asyncio
import codecs
import email.message
from dataclasses import dataclass, field

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from ...attachments import AttachmentTooLarge, AttachmentWriter, Staging, StoreUnavailable
from ..adapters import Rejection, WebhookRequest, parse_content_type
from ..request import OFF_LOOP_ABOVE

MAX_FIELD = 8 * 1024 * 1024
MAX_PARTS = 500
#: Codecs Python accepts as text encodings that are not charsets a sender means
#: (they transform text, or refuse the "replace" error handler).
NOT_CHARSETS = frozenset({"idna", "punycode", "unicode-escape", "raw-unicode-escape", "undefined"})


@dataclass
class Form:
    """A parsed form: ``fields`` (name to bytes; the first of repeated names wins),
    their declared ``charsets`` (from each part's ``Content-Type``) and ``files``
    (field name, writer), in the order they came."""

    fields: dict[str, bytes] = field(default_factory=dict)
    charsets: dict[str, str] = field(default_factory=dict)
    files: list[tuple[str, AttachmentWriter]] = field(default_factory=list)
    store_error: StoreUnavailable | None = None

    def check_store(self) -> None:
        """Raise the :class:`StoreUnavailable` met while the files were read, if any."""
        if self.store_error is not None:
            raise self.store_error

    def text(self, name: str, charset: str | None = None) -> str | None:
        """Field ``name`` decoded (``charset``, else the part's, else UTF-8); None when absent.

        Bytes that are not valid in the charset become U+FFFD, never an error.
        """
        raw = self.fields.get(name)
        if raw is None:
            return None
        return decode(raw, charset or self.charsets.get(name))


def decode(raw: bytes, charset: str | None) -> str:
    """``raw`` in ``charset``; invalid bytes replaced. A charset that is unknown, or not
    a text encoding (``base64``, ``rot13``, ``zlib``, ``hex``; ``idna``), reads as UTF-8."""
    try:
        info = codecs.lookup(charset or "utf-8")
        if not info._is_text_encoding or info.name in NOT_CHARSETS:
            info = codecs.lookup("utf-8")
        return raw.decode(info.name, "replace")
    except (LookupError, TypeError, ValueError):  # UnicodeError is a ValueError
        return raw.decode("utf-8", "replace")


class _Parts:
    """The parser's callbacks: one part at a time, into a field buffer or a writer."""

    def __init__(self, staging: Staging, max_field: int, max_parts: int) -> None:
        self.form = Form()
        self.staging = staging
        self.max_field = max_field
        self.max_parts = max_parts
        self.parts = 0
        self.ended = False
        self._headers: list[tuple[bytes, bytes]] = []
        self._name_buf = bytearray()
        self._value_buf = bytearray()
        self._field: str | None = None
        self._buffer: bytearray | None = None
        self._writer: AttachmentWriter | None = None
        self._discarding = False  # a file part whose bytes the store could not take

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self.part_begin,
            "on_header_field": lambda d, s, e: self._name_buf.extend(d[s:e]),
            "on_header_value": lambda d, s, e: self._value_buf.extend(d[s:e]),
            "on_header_end": self.header_end,
            "on_headers_finished": self.headers_finished,
            "on_part_data": self.part_data,
            "on_part_end": self.part_end,
            "on_end": self.end,
        }

    def part_begin(self) -> None:
        self.parts += 1
        if self.parts > self.max_parts:
            raise Rejection.malformed("bad_form", f"more than {self.max_parts} form parts")
        self._headers = []
        self._field, self._buffer, self._writer = None, None, None
        self._discarding = False

    def header_end(self) -> None:
        self._headers.append((bytes(self._name_buf).lower(), bytes(self._value_buf)))
        self._name_buf.clear()
        self._value_buf.clear()

    def headers_finished(self) -> None:
        headers = dict(self._headers)
        name, filename = _disposition(headers.get(b"content-disposition", b""))
        if not name:
            raise Rejection.malformed("bad_form", "a form part has no name")
        self._field = name[:200]
        media, params = parse_content_type(_header_text(headers.get(b"content-type", b"")))
        if filename is not None:
            if self.form.store_error is not None:
                self._discarding = True
                return
            try:
                self._writer = self.staging.begin(media or None, filename)
            except StoreUnavailable as exc:
                self._store_failed(exc)
                return
            self.form.files.append((self._field, self._writer))
        else:
            self._buffer = bytearray()
            if params.get("charset"):
                self.form.charsets.setdefault(self._field, params["charset"][:40])

    def _store_failed(self, exc: Exception) -> None:
        if not isinstance(exc, StoreUnavailable):
            exc = StoreUnavailable(f"the attachment store cannot be written: {exc}")
        self.form.store_error = self.form.store_error or exc
        self._writer, self._discarding = None, True

    def part_data(self, data: bytes, start: int, end: int) -> None:
        if self._writer is not None:
            try:
                self._writer.write(data[start:end])
            except (StoreUnavailable, OSError) as exc:
                self._store_failed(exc)
        elif self._buffer is not None:
            if len(self._buffer) + end - start > self.max_field:
                raise Rejection.too_large(
                    f"form field {self._field!r} is over {self.max_field} bytes"
                )
            self._buffer.extend(data[start:end])

    def part_end(self) -> None:
        if self._buffer is not None and self._field is not None:
            self.form.fields.setdefault(self._field, bytes(self._buffer))
        self._buffer, self._writer = None, None

    def end(self) -> None:
        self.ended = True


def _disposition(value: bytes) -> tuple[str | None, str | None]:
    """``(name, filename)`` of a ``Content-Disposition`` value (UTF-8, else Latin-1);
    RFC 2231 forms (``filename*=UTF-8''...``) are decoded by the email package, the
    rest by python-multipart's faster parser."""
    if b"*=" in value:
        message = email.message.Message()
        message["content-disposition"] = _header_text(value)
        name = message.get_param("name", header="content-disposition")
        return (name if isinstance(name, str) else None), message.get_filename()
    _, params = parse_options_header(value)
    name, filename = params.get(b"name"), params.get(b"filename")
    return (
        _header_text(name) if name is not None else None,
        _header_text(filename) if filename is not None else None,
    )


def _header_text(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


async def read_form(
    request: WebhookRequest,
    staging: Staging,
    *,
    max_field: int = MAX_FIELD,
    max_parts: int = MAX_PARTS,
    store_errors: str = "raise",
) -> Form:
    """The request's ``multipart/form-data`` body, its files in ``staging`` (uncommitted).

    ``store_errors``: ``"raise"`` (a :class:`StoreUnavailable` once the body is
    read) or ``"keep"`` (in :attr:`Form.store_error`; call :meth:`Form.check_store`
    once the request is authenticated)."""
    boundary = request.content_params.get("boundary", "")
    if request.content_type != "multipart/form-data" or not 1 <= len(boundary) <= 200:
        raise Rejection.malformed("bad_form", "expected multipart/form-data with a boundary")
    parts = _Parts(staging, max_field, max_parts)
    parser = MultipartParser(boundary.encode("latin-1"), parts.callbacks())
    length = request.content_length
    threaded = length is None or length > OFF_LOOP_ABOVE
    try:
        async for chunk in request.stream():
            if threaded:
                await asyncio.to_thread(parser.write, chunk)
            else:
                parser.write(chunk)
        parser.finalize()
    except AttachmentTooLarge as exc:
        raise Rejection.too_large(exc.message) from None
    except MultipartParseError as exc:
        raise Rejection.malformed("bad_form", f"the multipart body is malformed ({exc})") from None
    if not parts.ended:
        raise Rejection.malformed("bad_form", "the multipart body ends before its last boundary")
    if store_errors != "keep":
        parts.form.check_store()
    return parts.form


__all__ = ["Form", "decode", "read_form"]
