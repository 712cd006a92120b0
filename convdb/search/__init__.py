"""Search a customer's messages by words, phrases, people, phone numbers and email addresses.

::

    from convdb.search import search

    page = search("acme", '"late delivery" -refund', limit=20)
    for hit in page.results:
        print(hit.sent_at, hit.message_id, hit.snippet)
    older = search("acme", '"late delivery" -refund', before=page.next)

Results are that customer's messages, newest first (``sent_at``, then id),
``limit`` at a time; ``page.next`` is an opaque cursor for the following
page, or None after the last one (:mod:`convdb.search.cursor`). The query
syntax is :mod:`convdb.search.query`'s; what is searched, and how the index
is kept, is in ``docs/search.md`` (migrations 045 and 046).

Reads go to ``CONVDB_READ_URL`` when set (a replica), else the primary, in
one transaction under ``CONVDB_SEARCH_TIMEOUT`` (a statement timeout). Every refusal is a
:class:`~convdb.exceptions.SearchError` with a message for people: an
unknown customer, a query with nothing to search for (only symbols, or stop
words of the configured language), a query over ``CONVDB_SEARCH_MAX_QUERY``
characters or ``CONVDB_SEARCH_MAX_TERMS`` terms, a bad cursor, a search
stopped by the timeout.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

import peewee
import psycopg2

from ..config import Settings, load_settings
from ..db import closing, open_database, resolve_read_url
from ..exceptions import SearchError
from ..pgerrors import sqlstate
from . import cursor, query
from .snippet import snippet

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "SearchPage", "SearchResult", "search", "search_on"]

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
# Characters of a body read for its snippet: a window is found in those.
SNIPPET_SOURCE = 4000

# The statement timeout for the rest of the transaction, the customer, and
# the query as the database folds and parses it: one round trip.
COMPILE = """
SELECT set_config('statement_timeout', %s, true),
       (SELECT id FROM customers WHERE {column} = %s), q::text, numnode(q)
  FROM (SELECT {expression} AS q) x
"""

# One page: the customer's matching documents, newest first, from the
# cursor on; then, for those rows only, the message, its conversation (the
# customer again: a result is never another customer's) and its text. The
# query is a literal, so the planner weighs how common its words are: a
# rare word is looked up in the GIN index, a common one found by reading
# the customer's newest documents in order (docs/search.md). The customer
# is a bigint literal: btree_gin's operator class has no bigint = integer,
# and with an integer the GIN index could not take the customer key.
PAGE = """
SELECT s.message_id, m.conversation_id, s.sent_at, m.direction,
       left(coalesce(eb.raw, xb.raw), %(source)s), c.topic
  FROM (SELECT message_id, sent_at FROM convdb_search_messages
         WHERE customer_id = %(customer)s::bigint AND document @@ %(query)s::tsquery
               {before}
         ORDER BY sent_at DESC, message_id DESC
         LIMIT %(limit)s) s
  JOIN messages m ON m.id = s.message_id
  JOIN conversations c ON c.id = m.conversation_id AND c.customer_id = %(customer)s
  LEFT JOIN email_bodies eb ON eb.id = m.email_body_id
  LEFT JOIN xms_bodies xb ON xb.id = m.xms_body_id
 ORDER BY s.sent_at DESC, s.message_id DESC
"""
BEFORE = "AND (sent_at, message_id) < (%(sent_at)s, %(message_id)s)"


@dataclass(frozen=True)
class SearchResult:
    message_id: int
    conversation_id: int
    sent_at: dt.datetime
    direction: str
    snippet: str

    def to_json(self) -> dict:
        data = asdict(self)
        data["sent_at"] = self.sent_at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
        return data


@dataclass(frozen=True)
class SearchPage:
    results: list[SearchResult]
    next: str | None

    def to_json(self) -> dict:
        """The JSON document of ``convdb search --json``."""
        return {"results": [r.to_json() for r in self.results], "next": self.next}


def search(
    customer_key: str,
    text: str,
    *,
    limit: int = DEFAULT_LIMIT,
    before: str | None = None,
    db: peewee.Database | None = None,
    settings: Settings | None = None,
) -> SearchPage:
    """The messages of the customer ``customer_key`` that match ``text``, newest first.

    ``before``: the ``next`` cursor of the previous page. ``db``: a connected
    database (default: ``CONVDB_READ_URL``, else ``DATABASE_URL``).
    """
    settings = settings or load_settings()
    groups = _parse(text, limit, settings)
    tag = cursor.scope(customer_key, text)
    position = cursor.decode(before, tag) if before is not None else None
    if db is None:
        with closing(open_database(resolve_read_url(settings))) as own:
            return _run(own, customer_key, groups, position, limit, tag, settings)
    return _run(db, customer_key, groups, position, limit, tag, settings)


def search_on(
    conn,
    customer_id: int,
    text: str,
    *,
    limit: int = DEFAULT_LIMIT,
    before: str | None = None,
    settings: Settings | None = None,
) -> SearchPage:
    """:func:`search` on an open psycopg2 connection, for the customer ``customer_id``.

    Runs in the connection's current transaction (the caller commits or rolls
    back; the statement timeout is local to it). What the operator console
    uses: its pages read on their own connection to ``CONVDB_READ_URL``.
    """
    settings = settings or load_settings()
    groups = _parse(text, limit, settings)
    tag = cursor.scope(f"#{customer_id}", text)
    position = cursor.decode(before, tag) if before is not None else None

    def execute(sql: str, params) -> list[tuple]:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()

    try:
        return _page(execute, ("id", customer_id), groups, position, limit, tag, settings)
    except psycopg2.Error as exc:
        _timed_out(exc, settings)
        raise


def _parse(text: str, limit: int, settings: Settings) -> list:
    if not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise SearchError(f"limit {limit!r}: expected a whole number from 1 to {MAX_LIMIT}")
    return query.parse(
        text,
        max_chars=settings.search_max_query,
        max_terms=settings.search_max_terms,
        region=settings.phone_region,
    )


def _timed_out(exc: Exception, settings: Settings) -> None:
    if sqlstate(exc) == "57014":
        raise SearchError(
            f"the search ran longer than {settings.search_timeout:g} s and was stopped",
            hint="Add words that narrow it, or raise CONVDB_SEARCH_TIMEOUT.",
        ) from exc


def _run(db, customer_key, groups, position, limit, tag, settings) -> SearchPage:
    def execute(sql: str, params) -> list[tuple]:
        return db.execute_sql(sql, params).fetchall()

    try:
        # In the caller's transaction (a savepoint), the timeout is put back after.
        outer = db.in_transaction()
        with db.atomic():
            if outer:
                before = db.execute_sql("SHOW statement_timeout").fetchone()[0]
            page = _page(execute, ("key", customer_key), groups, position, limit, tag, settings)
            if outer:
                db.execute_sql("SELECT set_config('statement_timeout', %s, true)", (before,))
    except (peewee.DatabaseError, peewee.InterfaceError) as exc:
        _timed_out(exc, settings)
        raise
    return page


def _page(execute, customer, groups, position, limit, tag, settings) -> SearchPage:
    """One page; ``customer`` is ``("key", text)`` or ``("id", number)``."""
    timeout = str(int(settings.search_timeout * 1000))
    customer_id, tsquery = _compile(execute, customer, groups, timeout)
    params = {
        "customer": customer_id,
        "query": tsquery,
        "limit": limit + 1,
        "source": SNIPPET_SOURCE,
    }
    if position is not None:
        params["sent_at"], params["message_id"] = position
    rows = execute(PAGE.format(before=BEFORE if position is not None else ""), params)
    words = query.positive_words(groups)
    results = [
        SearchResult(mid, conv, sent_at, direction, snippet(body or topic, words))
        for mid, conv, sent_at, direction, body, topic in rows[:limit]
    ]
    following = None
    if len(rows) > limit:
        last = results[-1]
        following = cursor.encode(last.sent_at, last.message_id, tag)
    return SearchPage(results, following)


def _compile(execute, customer: tuple[str, object], groups, timeout: str) -> tuple[int, str]:
    """The customer's id and the query as tsquery text; SearchError for neither."""
    expression, params = query.to_sql(groups) if groups else ("''::tsquery", [])
    column, value = customer
    ((_, customer_id, tsquery, nodes),) = execute(
        COMPILE.format(column=column, expression=expression), [timeout, value, *params]
    )
    if customer_id is None:
        if column == "id":
            raise SearchError(f"no customer with id {value}")
        raise SearchError(
            f"no customer with key {str(value)[:80]!r}",
            hint="Customers are named by the key of their events (customer.key).",
        )
    if not nodes:
        raise SearchError(
            "nothing to search for: the query has no word that is searched "
            "(only symbols, or words too common to be indexed in the search language)",
            hint='Search for words, "a phrase", a phone number or an email address.',
        )
    return customer_id, tsquery
