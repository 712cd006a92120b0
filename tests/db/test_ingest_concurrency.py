"""Batches racing on the same new rows, each on its own connection.

Four threads start together (a barrier) and each ingests, in batches and in
an order of its own, messages that all need the same new customers,
providers, addresses, contacts, conversations and bodies; some messages are
the same delivery given to every thread. No batch may fail, and the rows
must be those one connection writes for the same messages: nothing created
twice, every message stored once, the counters right.
"""

from __future__ import annotations

import random
import threading

import pytest

from convdb import db as convdb_db
from convdb.exceptions import TransientError
from convdb.ingest import contacts as contacts_mod
from convdb.ingest import ingest_messages, parse_message, statements
from convdb.testing import query

from ..support import ACTUAL, STORED, example, snapshot

pytestmark = pytest.mark.slow

THREADS = 4


def payloads(thread: int) -> list[dict]:
    """Messages of customers c0-c2 with contacts p0-p5, on email and SMS; a third
    of them shared by every thread (same provider and message id)."""
    out = []
    for i in range(60):
        shared = i % 3 == 0
        c, p = i % 3, i % 6
        if i % 2:
            payload = example(
                customer={"key": f"c{c}", "name": f"Customer {c}"},
                message_id=f"mail-{i}" if shared else f"mail-{thread}-{i}",
                sender={"address": f"P{p}@Example.com", "name": f"Person {p}"},
                to=[{"address": f"support@c{c}.example"}, {"address": f"p{(p + 1) % 6}@x.io"}],
                conversation_key=f"thread-{i % 4}" if i % 4 else None,
                body=f"body {i % 5}",
            )
        else:
            payload = example(
                customer={"key": f"c{c}", "name": f"Customer {c}"},
                provider={"kind": "sms", "name": "twilio"},
                message_id=f"sms-{i}" if shared else f"sms-{thread}-{i}",
                sender={"address": f"+1415555{p:04d}"},
                to=[{"address": f"+1212555{c:04d}"}],
                conversation_key=None,
                subject=None,
                body=f"text {i % 5}",
                attachments=[{"url": f"https://files.example/{i % 4}.png"}],
            )
        out.append(payload)
    random.Random(thread).shuffle(out)
    return out


def test_concurrent_batches_create_every_row_once(server, template_db, db_url):
    barrier = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def worker(thread: int) -> None:
        database = convdb_db.open_database(db_url)
        messages = [parse_message(p) for p in payloads(thread)]
        try:
            barrier.wait()
            for start in range(0, len(messages), 20):
                with database.atomic():
                    ingest_messages(database, messages[start : start + 20])
        except BaseException as exc:  # collected, asserted below
            errors.append(exc)
        finally:
            database.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert query(db_url, STORED) == query(db_url, ACTUAL)
    assert query(db_url, "SELECT count(*) FROM messages") == [(20 + THREADS * 40,)]
    # The same rows as one connection ingesting every thread's messages in turn.
    name = server.create(template=template_db)
    try:
        alone = convdb_db.open_database(server.url(name))
        for thread in range(THREADS):
            with alone.atomic():
                ingest_messages(alone, [parse_message(p) for p in payloads(thread)])
        alone.close()
        expected = snapshot(lambda sql: query(server.url(name), sql))
    finally:
        server.drop(name)
    assert snapshot(lambda sql: query(db_url, sql)) == expected


def test_a_row_deleted_between_conflict_and_second_look_is_a_transient_failure(
    db, db_url, monkeypatch
):
    """Another transaction creates a customer (the INSERT conflicts with it), then
    deletes it before the second look: retry the event, never send it dead."""
    query(db_url, "INSERT INTO customers (key, name) VALUES ('gone', 'Gone')")
    real_run = statements.run

    def run(database, sql, params=()):
        rows = real_run(database, sql, params)
        if sql.startswith("INSERT INTO customers"):
            query(db_url, "DELETE FROM customers WHERE key = 'gone'")
        return rows

    monkeypatch.setattr(statements, "run", run)
    with db.atomic(), pytest.raises(TransientError, match="customers: rows deleted"):
        statements.create(
            db, "customers", [("key", "text")], [("name", "text")], {("gone",): ("Gone",)}
        )


def test_a_contact_linked_then_deleted_by_another_transaction_is_a_transient_failure(
    db, db_url, monkeypatch
):
    """Another transaction links the sender's address to a contact of its own
    just before this batch does (so the batch's link conflicts), then deletes
    that contact before the batch looks again: retry, never a KeyError."""
    query(db_url, "INSERT INTO customers (key, name) VALUES ('acme', 'Acme, Inc.')")
    query(db_url, "INSERT INTO email_addresses (raw) VALUES ('racer@example.com')")
    real_run = statements.run
    link = """
        WITH c AS (INSERT INTO contacts (customer_id, display_name)
                   SELECT id, 'Other' FROM customers WHERE key = 'acme'
                   RETURNING id, customer_id)
        INSERT INTO contact_addresses (customer_id, contact_id, email_address_id)
        SELECT c.customer_id, c.id, e.id FROM c, email_addresses e
         WHERE e.lowered = 'racer@example.com'"""

    def run(database, sql, params=()):
        racing = "INSERT INTO contacts (id, customer_id, display_name)" in sql
        if racing:
            query(db_url, link)
        rows = real_run(database, sql, params)
        if racing:
            query(db_url, "DELETE FROM contacts WHERE display_name = 'Other'")
        return rows

    monkeypatch.setattr(contacts_mod, "run", run)
    message = parse_message(example(sender={"address": "racer@example.com", "name": "R"}))
    with db.atomic(), pytest.raises(TransientError, match="contacts: deleted"):
        ingest_messages(db, [message])
