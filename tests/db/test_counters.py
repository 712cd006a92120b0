"""Conversation counters (003_baseline_counters, 023): right after every kind of write, by anyone.

``last_message_at``, ``message_count`` and ``participant_count`` (distinct
contacts) must equal what aggregating the rows gives, after plain SQL, after
the models, after deletes and moves, under concurrent writers, and after the
backfills of a database that held messages before the first history's 010
and participants before 023.
"""

from __future__ import annotations

import datetime as dt
import re
import threading

import psycopg2
import pytest

from convdb import migrate as migrate_lib
from convdb.models import (
    Contact,
    Conversation,
    ConversationParticipant,
    Customer,
    Message,
    Provider,
)

from ..support import ACTUAL, HISTORY_0_1, STORED, migrate_before

UTC = dt.UTC
T0 = dt.datetime(2025, 1, 1, tzinfo=UTC)


def counters(cur) -> dict[int, tuple]:
    cur.execute(STORED)
    return {row[0]: row[1:] for row in cur.fetchall()}


def assert_counters_right(cur) -> None:
    cur.execute(ACTUAL)
    actual = {row[0]: row[1:] for row in cur.fetchall()}
    assert counters(cur) == actual


@pytest.fixture
def conn(db_url):
    connection = psycopg2.connect(db_url)
    connection.autocommit = True
    yield connection
    connection.close()


@pytest.fixture
def world(conn):
    """Customer 1 with an SMS provider, conversations 1 and 2, contacts 1 and 2."""
    with conn.cursor() as cur:
        cur.execute("INSERT INTO customers (id, name) VALUES (1, 'Acme')")
        cur.execute("INSERT INTO providers (id, customer_id, kind, name) VALUES (1, 1, 'sms', 't')")
        cur.execute("INSERT INTO conversations (id, customer_id) VALUES (1, 1), (2, 1)")
        cur.execute("INSERT INTO contacts (id, customer_id) VALUES (1, 1), (2, 1)")
    return conn


def insert_messages(cur, conversation_id: int, minutes: list[int]) -> None:
    cur.execute(
        "INSERT INTO messages (conversation_id, provider_id, direction, sent_at) "
        "SELECT %s, 1, 'inbound', %s + m * interval '1 minute' FROM unnest(%s::int[]) m",
        (conversation_id, T0, minutes),
    )


def at(minute: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minute)


def test_a_new_conversation_counts_nothing(world):
    with world.cursor() as cur:
        assert counters(cur) == {1: (None, 0, 0), 2: (None, 0, 0)}


def test_plain_sql_inserts_deletes_and_moves(world):
    with world.cursor() as cur:
        insert_messages(cur, 1, [5, 1, 3])  # one statement, three rows
        insert_messages(cur, 1, [2])
        insert_messages(cur, 2, [7])
        assert counters(cur) == {1: (at(5), 4, 0), 2: (at(7), 1, 0)}

        # deleting the latest message falls back to the next latest
        cur.execute("DELETE FROM messages WHERE conversation_id = 1 AND sent_at = %s", (at(5),))
        assert counters(cur)[1] == (at(3), 3, 0)
        # an older one only lowers the count
        cur.execute("DELETE FROM messages WHERE conversation_id = 1 AND sent_at = %s", (at(1),))
        assert counters(cur)[1] == (at(3), 2, 0)

        # moving a message to another conversation updates both
        cur.execute("UPDATE messages SET conversation_id = 2 WHERE sent_at = %s", (at(3),))
        assert counters(cur) == {1: (at(2), 1, 0), 2: (at(7), 2, 0)}
        # changing sent_at updates last_message_at, in both directions
        cur.execute("UPDATE messages SET sent_at = %s WHERE sent_at = %s", (at(9), at(2)))
        assert counters(cur)[1] == (at(9), 1, 0)
        cur.execute("UPDATE messages SET sent_at = %s WHERE sent_at = %s", (at(0), at(7)))
        assert counters(cur)[2] == (at(3), 2, 0)
        # move and re-date in one statement, several rows
        cur.execute(
            "UPDATE messages SET conversation_id = 1, sent_at = sent_at + interval '1 hour' "
            "WHERE conversation_id = 2"
        )
        assert counters(cur) == {1: (at(63), 3, 0), 2: (None, 0, 0)}
        assert_counters_right(cur)

        cur.execute("DELETE FROM messages")
        assert counters(cur) == {1: (None, 0, 0), 2: (None, 0, 0)}


def test_an_update_that_moves_nothing_leaves_the_conversation_alone(world):
    with world.cursor() as cur:
        insert_messages(cur, 1, [1, 2])
        cur.execute("SELECT updated_at, xmin::text FROM conversations WHERE id = 1")
        before = cur.fetchone()
        cur.execute("UPDATE messages SET received_at = now()")
        cur.execute("SELECT updated_at, xmin::text FROM conversations WHERE id = 1")
        assert cur.fetchone() == before
        assert counters(cur)[1] == (at(2), 2, 0)


def test_participants_count_distinct_contacts(world):
    with world.cursor() as cur:
        cur.execute(
            "INSERT INTO conversation_participants VALUES "
            "(1, 1, 'contact'), (1, 2, 'contact'), (1, 1, 'customer'), (2, 2, 'contact')"
        )
        assert counters(cur) == {1: (None, 0, 2), 2: (None, 0, 1)}
        # contact 1 moves to conversation 2 as customer, and stays in 1 as contact
        cur.execute(
            "UPDATE conversation_participants SET conversation_id = 2 WHERE role = 'customer'"
        )
        assert counters(cur) == {1: (None, 0, 2), 2: (None, 0, 2)}
        cur.execute("DELETE FROM conversation_participants WHERE contact_id = 2")
        assert counters(cur) == {1: (None, 0, 1), 2: (None, 0, 1)}
        # deleting a contact cascades to its participant rows
        cur.execute("DELETE FROM contacts WHERE id = 1")
        assert counters(cur) == {1: (None, 0, 0), 2: (None, 0, 0)}


def test_a_second_role_leaves_the_conversation_alone(world):
    with world.cursor() as cur:
        cur.execute("INSERT INTO conversation_participants VALUES (1, 1, 'contact')")
        cur.execute("SELECT updated_at, xmin::text FROM conversations WHERE id = 1")
        before = cur.fetchone()
        cur.execute("INSERT INTO conversation_participants VALUES (1, 1, 'customer')")
        cur.execute("UPDATE conversation_participants SET role = role")
        cur.execute("DELETE FROM conversation_participants WHERE role = 'customer'")
        cur.execute("SELECT updated_at, xmin::text FROM conversations WHERE id = 1")
        assert cur.fetchone() == before
        assert counters(cur)[1] == (None, 0, 1)


# The sample inserts of the original data model specification ("Sample
# Inserts (US2)"), verbatim: one contact takes part as 'contact' and as
# 'customer'.
DATA_MODEL_SAMPLE = """
-- Customer
INSERT INTO customers(name) VALUES ('Acme, Inc.') RETURNING id; -- => :customer_id

-- Contact
INSERT INTO contacts(customer_id, display_name)
VALUES (:customer_id, 'Jane Doe') RETURNING id; -- => :contact_id

-- Conversation
INSERT INTO conversations(customer_id, topic)
VALUES (:customer_id, 'Onboarding') RETURNING id; -- => :conversation_id

-- Participants
INSERT INTO conversation_participants(conversation_id, contact_id, role)
VALUES
  (:conversation_id, :contact_id, 'contact'),
  (:conversation_id, :contact_id, 'customer')
ON CONFLICT DO NOTHING;

-- Provider (email example)
INSERT INTO providers(customer_id, kind, name)
VALUES (:customer_id, 'email', 'Sendgrid') RETURNING id; -- => :provider_id

-- Message (ordered by (conversation_id, sent_at DESC) via index)
INSERT INTO messages(conversation_id, provider_id, direction, sent_at)
VALUES (:conversation_id, :provider_id, 'outbound', now());
"""


def run_sample(cur, sample: str) -> dict[str, int]:
    """Run ``sample`` statement by statement, as psql would with its variables:
    ``-- => :name`` after a statement keeps the id it returned as ``:name``."""
    variables: dict[str, int] = {}
    for chunk in sample.split(";"):
        target = re.match(r"[ \t]*-- => :([a-z_]+)", chunk)
        if target:
            variables[target.group(1)] = cur.fetchone()[0]
        sql = re.sub(r"--[^\n]*", "", chunk).strip()
        if sql:
            cur.execute(re.sub(r":([a-z_]+)", r"%(\1)s", sql), variables)
    return variables


def test_the_data_model_sample_counts_one_participant(conn):
    with conn.cursor() as cur:
        ids = run_sample(cur, DATA_MODEL_SAMPLE)
        assert set(ids) == {"customer_id", "contact_id", "conversation_id", "provider_id"}
        cur.execute(
            "SELECT message_count, participant_count FROM conversation_overview "
            "WHERE conversation_id = %s",
            (ids["conversation_id"],),
        )
        assert cur.fetchone() == (1, 1)
        cur.execute("SELECT count(*) FROM conversation_participants")
        assert cur.fetchone() == (2,)


def test_truncate_resets_the_counters(world):
    with world.cursor() as cur:
        insert_messages(cur, 1, [1])
        cur.execute("INSERT INTO conversation_participants VALUES (2, 2, 'contact')")
        cur.execute("TRUNCATE message_attachments, message_status_reports, messages")
        cur.execute("TRUNCATE conversation_participants")
        assert counters(cur) == {1: (None, 0, 0), 2: (None, 0, 0)}


def test_deleting_a_conversation_with_messages_works(world):
    with world.cursor() as cur:
        insert_messages(cur, 1, [1, 2])
        cur.execute("INSERT INTO conversation_participants VALUES (1, 1, 'contact')")
        cur.execute("DELETE FROM conversations WHERE id = 1")
        assert counters(cur) == {2: (None, 0, 0)}


def test_models_keep_the_counters_too(db):
    customer = Customer.create(name="Acme")
    provider = Provider.create(customer=customer, kind="email", name="sendgrid")
    conversation = Conversation.create(customer=customer, topic="Onboarding")
    contact = Contact.create(customer=customer)
    ConversationParticipant.create(conversation=conversation, contact=contact, role="contact")
    first = Message.create(
        conversation=conversation, provider=provider, direction="inbound", sent_at=at(1)
    )
    Message.create(
        conversation=conversation, provider=provider, direction="outbound", sent_at=at(4)
    )
    fresh = Conversation.get_by_id(conversation.id)
    assert (fresh.last_message_at, fresh.message_count, fresh.participant_count) == (at(4), 2, 1)

    # saving the conversation (only dirty columns) does not overwrite the counters
    fresh.topic = "Renamed"
    fresh.save()
    conversation.topic = "Stale copy"
    conversation.save()
    first.delete_instance()
    fresh = Conversation.get_by_id(conversation.id)
    assert (fresh.topic, fresh.message_count, fresh.last_message_at) == ("Stale copy", 1, at(4))


def test_concurrent_writers_into_overlapping_conversations(world, db_url):
    """Four connections insert, and one deletes, in batches that touch the same
    conversations in different orders: every statement succeeds (no deadlock,
    the triggers lock conversations in id order) and the counters add up."""
    with world.cursor() as cur:
        cur.execute(
            "INSERT INTO conversations (id, customer_id) SELECT g, 1 FROM generate_series(3, 20) g"
        )
    errors: list[BaseException] = []
    barrier = threading.Barrier(5)

    def writer(seed: int) -> None:
        conn = psycopg2.connect(db_url)
        try:
            barrier.wait()
            for batch in range(30):
                ids = list(range(1, 21))
                ids = ids[seed + batch :] + ids[: seed + batch]
                if seed % 2:
                    ids.reverse()
                with conn, conn.cursor() as cur:
                    cur.execute(
                        "INSERT INTO messages (conversation_id, provider_id, direction, sent_at) "
                        "SELECT c, 1, 'inbound', %s + (c * 100 + %s) * interval '1 second' "
                        "FROM unnest(%s::bigint[]) WITH ORDINALITY u (c, o) ORDER BY o",
                        (T0, seed * 1000 + batch, ids),
                    )
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            conn.close()

    def deleter() -> None:
        conn = psycopg2.connect(db_url)
        try:
            barrier.wait()
            for _ in range(30):
                with conn, conn.cursor() as cur:
                    cur.execute(
                        "DELETE FROM messages WHERE id IN "
                        "(SELECT id FROM messages ORDER BY sent_at DESC LIMIT 7)"
                    )
        except BaseException as exc:
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=writer, args=(seed,)) for seed in range(4)]
    threads.append(threading.Thread(target=deleter))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    with world.cursor() as cur:
        cur.execute("SELECT count(*) FROM messages")
        assert 0 < cur.fetchone()[0] <= 4 * 30 * 20
        assert_counters_right(cur)


def test_migration_backfills_existing_rows(empty_db_url):
    """A database that held messages before 010 (of the first history, which a
    database at 008 still runs) gets its counters computed, without its
    conversations' updated_at changing."""
    migrate_lib.run(empty_db_url, sources=[HISTORY_0_1], echo=lambda _: None)
    later = [n for n in HISTORY_0_1.modules() if n >= "010"]
    migrate_lib.rollback(empty_db_url, source=HISTORY_0_1, count=len(later), echo=lambda _: None)
    conn = psycopg2.connect(empty_db_url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO customers (id, name) VALUES (1, 'Acme')")
            cur.execute(
                "INSERT INTO providers (id, customer_id, kind, name) VALUES (1, 1, 'sms', 't')"
            )
            cur.execute(
                "INSERT INTO conversations (id, customer_id, updated_at) "
                "VALUES (1, 1, '2020-01-01Z'), (2, 1, '2020-01-01Z')"
            )
            cur.execute("INSERT INTO contacts (id, customer_id) VALUES (1, 1)")
            cur.execute("INSERT INTO conversation_participants VALUES (1, 1, 'contact')")
            insert_messages(cur, 1, [3, 8, 5])
        migrate_lib.run(empty_db_url, sources=[HISTORY_0_1], echo=lambda _: None)
        with conn.cursor() as cur:
            assert counters(cur) == {1: (at(8), 3, 1), 2: (None, 0, 0)}
            cur.execute("SELECT DISTINCT updated_at FROM conversations")
            assert cur.fetchall() == [(dt.datetime(2020, 1, 1, tzinfo=UTC),)]
    finally:
        conn.close()


def test_migration_023_recounts_participants_as_contacts(empty_db_url):
    """A database that counted participant rows before 023 (the data model's
    sample counted 2) counts distinct contacts after it, updated_at unchanged."""
    migrate_before(empty_db_url, "023")
    conn = psycopg2.connect(empty_db_url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            ids = run_sample(cur, DATA_MODEL_SAMPLE)
            cur.execute("SET session_replication_role = replica")  # no updated_at trigger
            cur.execute("UPDATE conversations SET updated_at = '2020-01-01Z'")
            cur.execute("RESET session_replication_role")
            assert counters(cur)[ids["conversation_id"]][1:] == (1, 2)
        migrate_lib.run(empty_db_url, echo=lambda _: None)
        with conn.cursor() as cur:
            assert counters(cur)[ids["conversation_id"]][1:] == (1, 1)
            assert_counters_right(cur)
            cur.execute("SELECT DISTINCT updated_at FROM conversations")
            assert cur.fetchall() == [(dt.datetime(2020, 1, 1, tzinfo=UTC),)]
        # 053's messages.sender_id (filled in from the participants) goes too
        migrate_before(empty_db_url, "023", force=True)
        with conn.cursor() as cur:  # rolled back: rows counted again, as 016's triggers do
            assert counters(cur)[ids["conversation_id"]][1:] == (1, 2)
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        # contact 2 takes part already; contact 1 joins under two roles at once
        (
            "INSERT INTO conversation_participants VALUES (1, 1, 'contact')",
            "INSERT INTO conversation_participants VALUES (1, 1, 'customer')",
            2,
        ),
        # contact 2 joins as customer while its contact row is deleted
        (
            "INSERT INTO conversation_participants VALUES (1, 2, 'customer')",
            "DELETE FROM conversation_participants WHERE role = 'contact'",
            1,
        ),
    ],
)
def test_racing_participant_changes_are_counted_once(world, db_url, first, second, expected):
    """The second transaction waits for the first one's lock on the
    conversation, then recounts with the first one's rows in view: each
    contact counted once, none lost."""
    with world.cursor() as cur:
        cur.execute("INSERT INTO conversation_participants VALUES (1, 2, 'contact')")
    one, two = psycopg2.connect(db_url), psycopg2.connect(db_url)
    try:
        one.cursor().execute(first)  # holds its transaction open
        done = threading.Event()

        def run_second() -> None:
            with two, two.cursor() as cur:
                cur.execute(second)
            done.set()

        thread = threading.Thread(target=run_second)
        thread.start()
        assert not done.wait(0.5)  # blocked behind the first transaction
        one.commit()
        thread.join(timeout=10)
        assert done.is_set()
    finally:
        one.close()
        two.close()
    with world.cursor() as cur:
        assert_counters_right(cur)
        assert counters(cur)[1][2] == expected
