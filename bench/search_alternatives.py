"""The designs not chosen, measured on the same dataset and queries as the chosen one
(:mod:`bench.search_bench`): a GIN index on the document alone (no customer key), and
GIN indexes on the bodies joined through ``messages``. Each query is timed as SQL from
Python; the first page (21 rows) of each."""

from __future__ import annotations

import time

import psycopg2

from .report import Figure, percentile, say

# Design B: the bodies' own GIN indexes, joined through messages to the customer.
BODY_INDEXES = """
CREATE INDEX IF NOT EXISTS bench_xms_bodies_doc
    ON xms_bodies USING gin (convdb_search_body_v1(raw));
CREATE INDEX IF NOT EXISTS bench_email_bodies_doc
    ON email_bodies USING gin (convdb_search_body_v1(raw));
CREATE INDEX IF NOT EXISTS bench_doc_only ON convdb_search_messages USING gin (document);
ANALYZE xms_bodies, email_bodies, convdb_search_messages
"""
BODY_QUERY = """
SELECT m.id, m.sent_at FROM (
    SELECT m.id, m.sent_at FROM xms_bodies b JOIN messages m ON m.xms_body_id = b.id
      JOIN conversations c ON c.id = m.conversation_id
     WHERE convdb_search_body_v1(b.raw) @@ %(q)s::tsquery AND c.customer_id = %(customer)s
    UNION ALL
    SELECT m.id, m.sent_at FROM email_bodies b JOIN messages m ON m.email_body_id = b.id
      JOIN conversations c ON c.id = m.conversation_id
     WHERE convdb_search_body_v1(b.raw) @@ %(q)s::tsquery AND c.customer_id = %(customer)s
) m ORDER BY m.sent_at DESC, m.id DESC LIMIT 21
"""
DOCUMENT_ONLY = """
SELECT message_id, sent_at FROM convdb_search_messages
 WHERE customer_id = %(customer)s::bigint AND document @@ %(q)s::tsquery
 ORDER BY sent_at DESC, message_id DESC LIMIT 21
"""


def time_sql(url: str, sql: str, params: list[dict], n: int, *, setup: str = "") -> list[float]:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            if setup:
                cur.execute(setup)
            for p in params[:5]:
                cur.execute(sql, p)
                cur.fetchall()
            timings = []
            for i in range(n):
                started = time.perf_counter()
                cur.execute(sql, params[i % len(params)])
                cur.fetchall()
                timings.append((time.perf_counter() - started) * 1000)
        conn.rollback()
    finally:
        conn.close()
    return timings


def tsqueries(url: str, texts: list[str]) -> list[str]:
    """The tsquery text convdb.search builds for each of ``texts``."""
    from convdb.search import query

    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            found = []
            for text in texts:
                sql, params = query.to_sql(query.parse(text, max_chars=1000, max_terms=50))
                cur.execute(f"SELECT ({sql})::text", params)
                found.append(cur.fetchone()[0])
            return found
    finally:
        conn.close()


def alternative_figures(url: str, picked, customers, queries: int) -> list[Figure]:
    """p50 of the body-word queries under the designs not chosen (SQL only)."""
    figures = []
    conn = psycopg2.connect(url)
    conn.autocommit = True
    with conn.cursor() as cur:
        started = time.perf_counter()
        cur.execute(BODY_INDEXES)
        say(f"bench: body-level GIN indexes built in {time.perf_counter() - started:.0f} s")
    conn.close()
    for kind in ("rare word", "common word", "two-word phrase"):
        qs = tsqueries(url, picked["big"][kind])
        if not qs:
            continue
        for label, customer in customers.items():
            params = [{"q": q, "customer": customer} for q in qs]
            for design, sql, setup in (
                (
                    "chosen design's SQL alone (as the rows above, without Python)",
                    DOCUMENT_ONLY,
                    # the other designs' index, in the measuring transaction only
                    "DROP INDEX bench_doc_only",
                ),
                ("body-level GIN joined through messages", BODY_QUERY, ""),
                (
                    "GIN on the document alone (no customer key)",
                    DOCUMENT_ONLY,
                    # dropped in the measuring transaction only (rolled back)
                    "DROP INDEX convdb_search_messages_document_idx",
                ),
            ):
                timings = time_sql(url, sql, params, max(20, queries // 4), setup=setup)
                p50 = percentile(timings, 50)
                figures.append(
                    Figure(
                        f"alternative: {design}, {kind}, {label} customer, p50",
                        "ms",
                        runs=[p50],
                        info=True,
                        target_text="compare with the rows above",
                        note=f"p95 {percentile(timings, 95):.2f} ms",
                    )
                )
                say(f"bench: alternative {design}, {kind}, {label}: p50 {p50:.2f} ms")
    return figures
