"""Search figures: query latency by kind, big and small customer; pages by cursor; the
drain with and without the search index; index size; and the measured alternatives.

::

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python -m bench.search_bench [--messages 1000000] [--queries 200]
        [--drain 20000] [--runs 3] [--keep DBNAME]

Loads :mod:`bench.dataset` into a copy of a migrated template (``--keep``
reuses a database loaded before), then:

- the first page (20 results) of five kinds of query, through
  :func:`convdb.search.search` on one open connection, timed from Python:
  a rare word (about 0.01% of messages), a common word (about 5%), a phrase
  of two adjacent words each in 1-5%, a phone number fragment (the last 7
  digits of a contact's number, written ``555-2671``), an email domain
  (``@domain``); for the big customer (10% of the messages) and a small one;
  p50 and p95 over ``queries`` searches (20 different queries of each kind,
  cycled);
- pages 2 to 10 of the common word by cursor, against page 1;
- the same body-word queries against the alternatives, each timed as SQL:
  a GIN index on the document alone (no customer key), and a GIN index on
  the bodies joined through ``messages`` (the bodies are shared by all
  customers);
- the canonical drain (:func:`bench.drain_quick.drain`, the ``mixed``
  backlog) on a template with the search triggers and one with them
  disabled, alternating, same run;
- the size of the documents and their indexes, per million messages.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import time

import psycopg2

from convdb import migrate as migrate_lib
from convdb.config import load_settings
from convdb.db import closing, open_database
from convdb.db import with_database as db_url
from convdb.search import search

from . import dataset
from .report import Figure, percentile, say
from .search_alternatives import alternative_figures

KINDS = ("rare word", "common word", "two-word phrase", "phone fragment", "email domain")
DISTINCT = 20  # different queries of each kind

# Words by how many documents hold them (ts_stat reads every document once).
WORD_STATS = """
SELECT word, ndoc FROM ts_stat('SELECT document FROM convdb_search_messages')
 WHERE word ~ '^[a-z]+$' AND ndoc BETWEEN %s AND %s
 ORDER BY abs(ndoc - %s), word LIMIT %s
"""

PHONES = """
SELECT DISTINCT right(regexp_replace(pn.e164, '[^0-9]', '', 'g'), 7)
  FROM conversations c
  JOIN conversation_participants cp ON cp.conversation_id = c.id AND cp.role = 'contact'
  JOIN contact_addresses ca ON ca.contact_id = cp.contact_id
  JOIN phone_numbers pn ON pn.id = ca.phone_number_id
 WHERE c.customer_id = %s
 LIMIT %s
"""

DOMAINS = """
SELECT split_part(ea.lowered, '@', 2), count(*)
  FROM conversations c
  JOIN conversation_participants cp ON cp.conversation_id = c.id AND cp.role = 'contact'
  JOIN contact_addresses ca ON ca.contact_id = cp.contact_id
  JOIN email_addresses ea ON ea.id = ca.email_address_id
 WHERE c.customer_id = %s
 GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT %s
"""


def pick_queries(url: str, messages: int, customers: dict[str, int]) -> dict[str, dict]:
    """Per kind, the texts to search (per customer where they depend on it)."""
    conn = psycopg2.connect(url)
    picked: dict[str, dict] = {}
    try:
        with conn.cursor() as cur:

            def words(share: float, low: float, high: float, n: int = DISTINCT) -> list[str]:
                target = max(1, round(messages * share))
                cur.execute(
                    WORD_STATS,
                    (max(1, round(messages * low)), max(1, round(messages * high)), target, n),
                )
                return [w for w, _ in cur.fetchall()]

            rare = words(0.0001, 0.00005, 0.0002)
            common = words(0.05, 0.03, 0.07)
            middle = set(words(0.02, 0.01, 0.05, 400))
            # Adjacent pairs of such words, as bodies across the pool hold them.
            cur.execute("SELECT raw FROM xms_bodies WHERE id % 50 = 7 ORDER BY id")
            pairs: list[str] = []
            for (raw,) in cur.fetchall():
                tokens = raw.split()
                for a, b in itertools.pairwise(tokens):
                    if a in middle and b in middle and a != b and f"{a} {b}" not in pairs:
                        pairs.append(f"{a} {b}")
                if len(pairs) >= DISTINCT:
                    break
            for label, customer in customers.items():
                cur.execute(PHONES, (customer, DISTINCT))
                phones = [f"{d[:3]}-{d[3:]}" for (d,) in cur.fetchall()]
                cur.execute(DOMAINS, (customer, DISTINCT))
                domains = [f"@{d}" for d, _ in cur.fetchall()]
                picked[label] = {
                    "rare word": rare,
                    "common word": common,
                    "two-word phrase": [f'"{p}"' for p in pairs],
                    "phone fragment": phones,
                    "email domain": domains,
                }
    finally:
        conn.close()
    return picked


def time_search(db, key: str, texts: list[str], n: int, settings) -> list[float]:
    """Milliseconds of ``n`` first-page searches, cycling through ``texts``."""
    for text in texts[:5]:  # warm-up
        search(key, text, db=db, settings=settings)
    timings = []
    for i in range(n):
        started = time.perf_counter()
        search(key, texts[i % len(texts)], db=db, settings=settings)
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def page_costs(db, key: str, texts: list[str], settings, pages: int = 10) -> tuple[list, list]:
    """Milliseconds of page 1 and of pages 2..``pages`` (by cursor) of each text; each
    sequence read once untimed first, so that every page is timed in the same cache
    state (deeper pages reach older, colder parts of the table)."""
    first, later = [], []
    for timed in (False, True):
        for text in texts:
            before = None
            for page in range(pages):
                started = time.perf_counter()
                result = search(key, text, before=before, db=db, settings=settings)
                if timed:
                    (first if page == 0 else later).append((time.perf_counter() - started) * 1000)
                before = result.next
                if before is None:
                    break
    return first, later


def sizes_per_million(url: str, messages: int) -> dict[str, float]:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            # convdb's own indexes only (not the alternatives' bench_* ones)
            cur.execute(
                "SELECT pg_table_size('convdb_search_messages') + (SELECT sum(pg_relation_size("
                "indexrelid)) FROM pg_index WHERE indrelid = 'convdb_search_messages'::regclass "
                "AND indexrelid::regclass::text NOT LIKE 'bench%%')::bigint, "
                "pg_relation_size('convdb_search_messages_document_idx'), "
                "pg_relation_size('convdb_search_messages_recent_idx'), "
                "pg_total_relation_size('convdb_search_conversations')"
            )
            total, gin, recent, conversations = cur.fetchone()
    finally:
        conn.close()
    scale = 1_000_000 / max(1, messages) / 2**20
    return {
        "documents, their indexes and the conversation parts": (total + conversations) * scale,
        "GIN index (customer_id, document)": gin * scale,
        "ordering index (customer_id, sent_at, message_id)": recent * scale,
    }


DISABLE_SEARCH_TRIGGERS = r"""
DO $$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT tgrelid::regclass AS tbl, tgname FROM pg_trigger
              WHERE tgname LIKE '%\_search\_%' AND NOT tgisinternal
    LOOP
        EXECUTE format('ALTER TABLE %s DISABLE TRIGGER %I', t.tbl, t.tgname);
    END LOOP;
END
$$
"""


def drain_figures(base: str, events: int, runs: int) -> list[float]:
    """Per run, the canonical drain rate with the search index / without it."""
    from . import drain_quick  # it imports the runner, which imports this module

    with_search = f"convdb_search_with_{os.getpid()}"
    without = f"convdb_search_without_{os.getpid()}"
    ratios = []
    try:
        for name in (with_search, without):
            drain_quick.admin(base, f"DROP DATABASE IF EXISTS {name}")
            drain_quick.admin(base, f"CREATE DATABASE {name}")
            migrate_lib.run(db_url(base, name), echo=lambda _: None)
        # Without: the same schema with every search trigger disabled (045 and 046
        # cannot be rolled back alone: later modules follow them).
        drain_quick.admin(db_url(base, without), DISABLE_SEARCH_TRIGGERS)
        for run in range(runs):
            order = (without, with_search) if run % 2 == 0 else (with_search, without)
            rate = {
                name: drain_quick.drain(base, name, "canonical", events, 1, 1000, 1, "mixed")
                for name in order
            }
            ratios.append(rate[with_search] / rate[without])
            say(
                f"bench: drain with search {rate[with_search]:,.0f}/s, "
                f"without {rate[without]:,.0f}/s: {ratios[-1]:.2f}"
            )
    finally:
        for name in (with_search, without):
            drain_quick.admin(base, f"DROP DATABASE IF EXISTS {name}")
    return ratios


def search_figures(
    server,
    template: str,
    shape: dataset.Shape,
    queries: int,
    drain_events: int,
    runs: int,
    notes: list[str],
    keep: str | None = None,
) -> list[Figure]:
    if keep and not server.execute(f"SELECT 1 FROM pg_database WHERE datname = '{keep}'"):
        server.execute(f'CREATE DATABASE "{keep}" TEMPLATE "{template}"')
        say(f"bench: search dataset into {keep} (kept), {shape.messages:,} messages")
        dataset.load(server.url(keep), shape, echo=say)
    if keep:
        url = server.url(keep)
        conn = psycopg2.connect(url)
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM messages")
            messages = cur.fetchone()[0]
            cur.execute(
                "SELECT id FROM customers WHERE key IN ('ds-1', %s) ORDER BY id",
                (f"ds-{shape.customers}",),
            )
            ids = [r[0] for r in cur.fetchall()]
        conn.close()
        summary = dataset.Summary(messages, 0, shape.customers, 0, ids[0], ids[-1])
    else:
        url = server.url(server.create("search", template))
        say(f"bench: search dataset, {shape.messages:,} messages by set-based SQL")
        summary = dataset.load(url, shape, echo=say)
        notes.append(
            f"Search dataset (bench/dataset.py): {summary.messages:,} messages, "
            f"{summary.customers:,} customers, loaded in {summary.seconds:.0f} s through "
            "every trigger (the search documents included)."
        )
    settings = load_settings()
    customers = {"big": summary.big_customer, "small": summary.small_customer}
    keys = {}
    with closing(open_database(url)) as db:
        for label, cid in customers.items():
            keys[label] = db.execute_sql(
                "SELECT key FROM customers WHERE id = %s", (cid,)
            ).fetchone()[0]
        count = {
            label: db.execute_sql(
                "SELECT count(*) FROM convdb_search_messages WHERE customer_id = %s", (cid,)
            ).fetchone()[0]
            for label, cid in customers.items()
        }
    say(f"bench: search customers: big {count['big']:,} messages, small {count['small']:,}")
    picked = pick_queries(url, summary.messages, customers)
    figures: list[Figure] = []
    with closing(open_database(url)) as db:
        for label in customers:
            for kind in KINDS:
                texts = picked[label][kind]
                name = f"search first page, {kind}, {label} customer ({count[label]:,} msgs)"
                if not texts:
                    figures.append(Figure(name, "ms", missing="no such query in the dataset"))
                    continue
                timings = time_search(db, keys[label], texts, queries, settings)
                p50, p95 = percentile(timings, 50), percentile(timings, 95)
                figures.append(
                    Figure(f"{name}, p50", "ms", runs=[p50], at_most=10, target_text="≤ 10 ms")
                )
                figures.append(
                    Figure(f"{name}, p95", "ms", runs=[p95], at_most=50, target_text="≤ 50 ms")
                )
                say(f"bench: {name}: p50 {p50:.2f} ms, p95 {p95:.2f} ms")
        first, later = page_costs(db, keys["big"], picked["big"]["common word"], settings)
    pages = "search pages 2-10 by cursor / page 1, common word, big customer (median)"
    if later:
        figures.append(
            Figure(
                pages,
                "x",
                runs=[statistics.median(later) / statistics.median(first)],
                at_most=1.5,
                target_text="≤ 1.5x",
                note=f"page 1 {statistics.median(first):.2f} ms, "
                f"pages 2-10 {statistics.median(later):.2f} ms",
            )
        )
    else:
        figures.append(Figure(pages, "x", target_text="≤ 1.5x", missing="one page only"))
    sizes = sizes_per_million(url, summary.messages)  # before the alternatives' indexes
    figures += alternative_figures(url, picked, customers, queries)
    for what, mb in sizes.items():
        figures.append(
            Figure(
                f"search index size per million messages: {what}",
                "MB",
                runs=[mb],
                info=True,
                target_text="reported",
            )
        )
    if drain_events:
        ratios = drain_figures(server.admin_url, drain_events, runs)
        figures.append(
            Figure(
                f"canonical drain with the search index / without it ({drain_events:,} events, "
                "mixed backlog, same run)",
                "x",
                runs=ratios,
                at_least=0.85,
                target_text="≥ 0.85x",
            )
        )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.search_bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=1_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--drain", type=int, default=20_000, help="events per drain run (0: none)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", metavar="DBNAME", help="reuse this loaded database (kept)")
    args = parser.parse_args()
    from .report import table
    from .runner import Server

    server = Server(os.environ["DATABASE_URL"])
    notes: list[str] = []
    try:
        template = server.create("searchtmpl")
        migrate_lib.run(server.url(template), echo=lambda _: None)
        shape = dataset.Shape(messages=args.messages, customers=args.customers)
        figures = search_figures(
            server, template, shape, args.queries, args.drain, args.runs, notes, keep=args.keep
        )
    finally:
        if not args.keep:
            server.drop_all()
        else:
            server.execute(f'DROP DATABASE IF EXISTS "{template}"')
    print(table(figures))
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
