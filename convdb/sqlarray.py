"""Python lists sent to PostgreSQL as one array literal.

psycopg2 sends a list as ``ARRAY[v1, v2, ...]``: it adapts and quotes every
element on its own, holding the GIL, and the server then parses a thousand
element expressions, coerces each and folds them into a constant. The batch
paths pass lists of a thousand ids, keys and texts to ``unnest`` in every
statement; profiled, that quoting was the largest single piece of the
worker's Python time. :class:`Array` sends the same values as one string,
``'{1,2,3}'``, which the SQL casts (``%s::bigint[]``) and the type's array
input function reads in one pass::

    cursor.execute("SELECT * FROM unnest(%s::text[])", (Array(["a", None, 'say "hi"']),))

Elements: ``None`` (NULL), ``int``, ``float``, ``str`` and aware ``datetime``
(sent in ISO 8601 with its offset). Text is double-quoted with ``\\`` and ``"``
backslash-escaped, as the array syntax wants; the whole literal is then
quoted by psycopg2 like any string, so nothing in a value can reach the SQL.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable

from psycopg2.extensions import ISQLQuote, QuotedString

__all__ = ["Array", "literal"]

_FLOAT_WORDS = {"inf": "Infinity", "-inf": "-Infinity", "nan": "NaN"}


def _element(value) -> str:
    if value is None:
        return "NULL"
    kind = type(value)
    if kind is str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if kind is int:
        return str(value)
    if kind is float:
        return repr(value) if math.isfinite(value) else _FLOAT_WORDS[str(value)]
    if kind is dt.datetime:
        if value.tzinfo is None:
            raise ValueError(f"naive datetime in an array: {value!r}")
        return '"' + value.isoformat() + '"'
    raise TypeError(f"cannot send {kind.__name__} in an array literal: {value!r}")


def literal(values: Iterable) -> str:
    """The PostgreSQL array literal of ``values`` (``'{1,NULL,"a b"}'``)."""
    values = values if isinstance(values, list) else list(values)
    if all(type(v) is int for v in values):
        return "{" + ",".join(map(str, values)) + "}"
    return "{" + ",".join(map(_element, values)) + "}"


class Array:
    """Adapts to the quoted array literal of ``values`` (cast it in the SQL)."""

    __slots__ = ("_quoted",)

    def __init__(self, values: Iterable) -> None:
        self._quoted = QuotedString(literal(values))

    def __conform__(self, protocol):
        return self if protocol is ISQLQuote else None

    def prepare(self, conn) -> None:  # psycopg2 hands over the connection: its encoding
        self._quoted.prepare(conn)

    def getquoted(self) -> bytes:
        return self._quoted.getquoted()
