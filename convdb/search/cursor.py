"""Keyset cursors: where a page of results ended, opaque to the caller.

A cursor holds the ``sent_at`` (microseconds since 1970, UTC) and the id of
the last message of a page, and 4 bytes of a hash of the customer key and
the query, so that a cursor handed to another search is refused rather than
read as a position in it. The next page is every match strictly older in
(``sent_at``, id) order: messages stored after the first page never shift
it, and no message is shown twice or skipped.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import struct

from ..exceptions import SearchError

__all__ = ["decode", "encode", "scope"]

_VERSION = 1
_FORMAT = ">BqqI"  # version, sent_at in microseconds, message id, scope
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MAX_LENGTH = 64


def scope(customer_key: str, query: str) -> int:
    """The 32-bit tag that binds a cursor to one customer and one query text."""
    digest = hashlib.sha256(f"{customer_key}\0{query}".encode("utf-8", "surrogatepass"))
    return int.from_bytes(digest.digest()[:4], "big")


def encode(sent_at: dt.datetime, message_id: int, tag: int) -> str:
    micros = (sent_at - _EPOCH) // dt.timedelta(microseconds=1)
    raw = struct.pack(_FORMAT, _VERSION, micros, message_id, tag)
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode(text: str, tag: int) -> tuple[dt.datetime, int]:
    """(sent_at, message id) of a cursor made by :func:`encode` for the same ``tag``."""
    bad = SearchError(
        f"bad cursor {text[:_MAX_LENGTH]!r}: not a cursor that convdb search printed",
        hint="Pass the 'next' value of the previous page unchanged, with the same "
        "customer and query.",
    )
    if not text or len(text) > _MAX_LENGTH or not text.isascii():
        raise bad
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        version, micros, message_id, found = struct.unpack(_FORMAT, raw)
        sent_at = _EPOCH + dt.timedelta(microseconds=micros)
    except (binascii.Error, struct.error, ValueError, OverflowError):
        raise bad from None
    if version != _VERSION or message_id <= 0:
        raise bad
    if found != tag:
        raise SearchError(
            "this cursor belongs to another search (another customer or query)",
            hint="Pass --before only with the customer and query that printed it.",
        )
    return sent_at, message_id
