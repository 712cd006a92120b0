"""Erasure at scale: a contact with many messages in a database of many.

::

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python -m bench.privacy_bench [--messages 1000000] [--person 10000] \\
        [--events 200000] [--keep]

Loads :mod:`bench.loader`'s dataset (plain SQL through every trigger), adds
one person to customer 1 with ``--person`` messages (their own conversations
and shared ones, their own and shared bodies, attachments), and ``--events``
done queue events of that customer (1% naming the person). Then:

1. the statements of an erasure, each timed (a dry run, rolled back), and
   the plan (``EXPLAIN ANALYZE``) of the slowest one;
2. the real erasure: the tables' part, and the queue's part apart (reading
   every payload of the customer: no index is kept by enqueue).
"""

from __future__ import annotations

import argparse
import json
import time
import uuid

import psycopg2

from convdb import migrate as migrate_lib
from convdb.db import open_database
from convdb.privacy import erase, erase_contact

from . import loader
from .loader import Scale
from .runner import database_url

PERSON = "bench.person@example.com"

ADD_PERSON = """
WITH c AS (SELECT min(id) AS id FROM customers),
ct AS (INSERT INTO contacts (customer_id, display_name) SELECT id, 'Bench Person' FROM c
       RETURNING id, customer_id),
ea AS (INSERT INTO email_addresses (raw) VALUES (%(address)s) RETURNING id)
INSERT INTO contact_addresses (customer_id, contact_id, email_address_id)
SELECT ct.customer_id, ct.id, ea.id FROM ct, ea RETURNING contact_id
"""

# The person is in 200 conversations of customer 1: the first 100 their own
# (alone), the next 100 shared with the contact already there.
PERSON_MESSAGES = """
WITH own AS (
    INSERT INTO conversations (customer_id, topic)
    SELECT (SELECT min(id) FROM customers), 'person ' || i FROM generate_series(1, 100) i
    RETURNING id
), shared AS (
    SELECT id FROM conversations WHERE customer_id = (SELECT min(id) FROM customers)
      AND topic LIKE 'bench topic %%' ORDER BY id LIMIT 100
), convs AS (
    SELECT id, row_number() OVER (ORDER BY id) AS n FROM (
        SELECT id FROM own UNION ALL SELECT id FROM shared) x
), p AS (
    INSERT INTO conversation_participants (conversation_id, contact_id, role)
    SELECT id, %(contact)s, 'contact' FROM convs RETURNING 1
), bodies AS (
    INSERT INTO email_bodies (raw)
    SELECT 'a body only the person wrote, number ' || i FROM generate_series(1, 1000) i
    RETURNING id
), b AS (SELECT array_agg(id) AS ids FROM bodies)
INSERT INTO messages (conversation_id, provider_id, direction, email_body_id, sent_at,
                      sender_id)
SELECT c.id,
       (SELECT id FROM providers WHERE customer_id = (SELECT min(id) FROM customers)
          AND kind = 'email'),
       'inbound', b.ids[1 + i %% 1000], timestamptz '2025-06-01' + i * interval '1 minute',
       %(contact)s
  FROM generate_series(1, %(person)s) i
  JOIN convs c ON c.n = 1 + i %% 200
 CROSS JOIN b
"""

PERSON_ATTACHMENTS = """
WITH u AS (
    INSERT INTO attachment_urls (raw)
    SELECT 'https://files.example/person/' || i || '.png' FROM generate_series(1, 100) i
    RETURNING id
), a AS (
    INSERT INTO attachments (url_id, content_type) SELECT id, 'image/png' FROM u RETURNING id
), numbered AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM a)
INSERT INTO message_attachments (message_id, attachment_id)
SELECT m.id, numbered.id
  FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM messages
         WHERE sender_id = %(contact)s LIMIT 100) m
  JOIN numbered USING (n)
"""

EVENTS = """
INSERT INTO inbound_events (event_type, payload, status, processed_at)
SELECT 'message.received',
       jsonb_build_object(
           'customer', jsonb_build_object('key', 'bench-1'),
           'provider', jsonb_build_object('kind', 'email', 'name', 'bench-mail'),
           'message_id', 'ev-' || i,
           'from', jsonb_build_object('address',
               CASE WHEN i %% 100 = 0 THEN %(address)s ELSE 'someone' || i || '@example.org' END),
           'to', jsonb_build_array(jsonb_build_object('address', 'support@bench.example')),
           'body', 'an event body of a few words, number ' || i,
           'sent_at', '2025-06-01T00:00:00Z'),
       'done', now()
  FROM generate_series(1, %(events)s) i
"""


def _admin(url: str, sql: str) -> None:
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        conn.cursor().execute(sql)
    finally:
        conn.close()


def _setup(url: str, args) -> int:
    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "UPDATE customers SET key = 'bench-' || (id - (SELECT min(id) FROM customers) + 1)"
            )
            cur.execute(ADD_PERSON, {"address": PERSON})
            contact = cur.fetchone()[0]
            cur.execute(PERSON_MESSAGES, {"contact": contact, "person": args.person})
            cur.execute(PERSON_ATTACHMENTS, {"contact": contact})
            cur.execute(EVENTS, {"events": args.events, "address": PERSON})
        conn.autocommit = True
        conn.cursor().execute("VACUUM ANALYZE")
    finally:
        conn.close()
    return contact


class Timed:
    """Wraps a database's execute_sql: each statement's time; ``explain`` one of them."""

    def __init__(self, db, explain: str | None = None) -> None:
        self.db, self.explain, self.times, self.plan = db, explain, [], None
        self._execute = db.execute_sql
        db.execute_sql = self

    def __call__(self, sql, params=None):
        text = " ".join(str(sql).split())
        if self.explain and text == self.explain and self.plan is None:
            cursor = self._execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
            self.plan = "\n".join(r[0] for r in cursor.fetchall())
            return self._execute("SELECT 1 WHERE false", None)  # nothing to read back
        started = time.perf_counter()
        cursor = self._execute(sql, params)
        self.times.append((time.perf_counter() - started, text))
        return cursor

    def close(self) -> None:
        self.db.execute_sql = self._execute


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--person", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--keep", action="store_true", help="keep the database")
    args = parser.parse_args()
    import os

    base = os.environ["DATABASE_URL"]
    name = f"convdb_privacy_bench_{uuid.uuid4().hex[:8]}"
    _admin(base, f"CREATE DATABASE {name}")
    url = database_url(base, name)
    try:
        migrate_lib.run(url, echo=lambda _: None)
        scale = Scale(
            customers=10, conversations=max(1000, args.messages // 20), messages=args.messages
        )
        print(f"loading {args.messages:,} messages ...", flush=True)
        print(f"  loaded in {loader.load(url, scale, echo=lambda _: None):.0f} s", flush=True)
        _setup(url, args)
        db = open_database(url)
        try:
            started = time.perf_counter()
            found = erase.events_naming(db, "bench-1", {PERSON})
            queue_seconds = time.perf_counter() - started
            timed = Timed(db)
            erase_contact(db, "bench-1", PERSON, dry_run=True)
            timed.close()
            slowest = sorted(
                (t for t in timed.times if "inbound_events" not in t[1]), reverse=True
            )[:5]
            timed = Timed(db, explain=slowest[0][1])
            erase_contact(db, "bench-1", PERSON, dry_run=True)
            timed.close()
            plan = timed.plan
            queue_times: list[float] = []

            def timing(function):
                def timed_call(*args, **kwargs):
                    started = time.perf_counter()
                    try:
                        return function(*args, **kwargs)
                    finally:
                        queue_times.append(time.perf_counter() - started)

                return timed_call

            # the queue's part: finding the events (SQL and Python) and deleting them
            originals = erase.events_naming, erase.delete_events
            erase.events_naming, erase.delete_events = (timing(f) for f in originals)
            started = time.perf_counter()
            try:
                result = erase_contact(db, "bench-1", PERSON)
            finally:
                erase.events_naming, erase.delete_events = originals
            total = time.perf_counter() - started
            events_part = sum(queue_times)
        finally:
            db.close()
        print(
            json.dumps(
                {
                    "messages": args.messages,
                    "person_messages": args.person,
                    "customer_events": args.events,
                    "events_naming_person": len(found),
                    "erase_total_s": round(total, 3),
                    "erase_queue_part_s": round(events_part, 3),
                    "erase_tables_part_s": round(total - events_part, 3),
                    "events_scan_alone_s": round(queue_seconds, 3),
                    "counts": result.counts,
                },
                indent=1,
            )
        )
        print("slowest statements (dry run):")
        for seconds, sql in slowest:
            print(f"  {seconds * 1000:8.1f} ms  {sql[:150]}")
        print("plan of the slowest:\n" + (plan or ""))
    finally:
        if not args.keep:
            _admin(base, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


if __name__ == "__main__":
    main()
