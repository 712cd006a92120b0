"""The search documents stay right for every write path: the worker, plain SQL, updates of
bodies, people and conversations, deletes (erasure and retention delete rows), the
migrations that build them for an existing database, and a race with a rename."""

from __future__ import annotations

import datetime as dt
import threading

import psycopg2
import pytest

from convdb import migrate as migrate_lib
from convdb.search import search
from convdb.testing import query, scalar

from ..support import migrate_before
from .test_search import event, ids, ingest

# Messages whose stored document is missing or differs from one computed now
# (with the same functions), and documents left without a message.
WRONG = """
SELECT m.id FROM messages m
  JOIN conversations c ON c.id = m.conversation_id
  LEFT JOIN convdb_search_messages s ON s.message_id = m.id
  LEFT JOIN email_bodies eb ON eb.id = m.email_body_id
  LEFT JOIN xms_bodies xb ON xb.id = m.xms_body_id
  LEFT JOIN LATERAL convdb_search_conversation_docs_v1(ARRAY[c.id]) d ON true
 WHERE s.message_id IS NULL
    OR s.customer_id <> c.customer_id OR s.sent_at <> m.sent_at
    OR s.document <> convdb_search_body_v1(coalesce(eb.raw, xb.raw)) || d.document
UNION ALL
SELECT s.message_id FROM convdb_search_messages s
 WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = s.message_id)
"""


def assert_right(url: str) -> None:
    assert query(url, WRONG) == []


@pytest.fixture
def acme(db, db_url):
    first = ingest(
        db,
        [
            event(
                1,
                "parcel lost in transit",
                name="Dana Reyes",
                sender="dana@shop.example",
                subject="Lost parcel",
                key="t1",
            ),
            event(2, "any news about my parcel", sender="dana@shop.example", key="t1"),
            event(3, "invoice attached", channel="sms", sender="+14155550003", key="t2"),
        ],
    )
    assert_right(db_url)
    return first


def test_the_worker_writes_documents_for_every_message(db, db_url, acme):
    assert ids(db, "acme", "parcel") == [acme[1], acme[0]]
    assert ids(db, "acme", "reyes") == [acme[1], acme[0]]  # a name the second message lacks
    assert ids(db, "acme", "lost") == [acme[1], acme[0]]  # the conversation's topic
    assert ids(db, "acme", "transit") == [acme[0]]
    assert ids(db, "acme", "555-0003") == [acme[2]]


def test_plain_sql_inserts(db, db_url):
    with psycopg2.connect(db_url) as conn, conn.cursor() as cur:
        cur.execute("""
            INSERT INTO customers (name, key) VALUES ('Acme', 'acme');
            INSERT INTO providers (customer_id, kind, name) SELECT id, 'sms', 't' FROM customers;
            INSERT INTO contacts (customer_id, display_name)
            SELECT id, 'Quentin Blake' FROM customers;
            INSERT INTO conversations (customer_id, topic) SELECT id, 'Order 77' FROM customers;
            INSERT INTO conversation_participants (conversation_id, contact_id, role)
            SELECT v.id, c.id, 'contact' FROM conversations v, contacts c;
            INSERT INTO xms_bodies (raw) VALUES ('Is my order   shipped?');
            INSERT INTO messages (conversation_id, provider_id, direction, xms_body_id, sent_at)
            SELECT v.id, p.id, 'inbound', b.id, now()
              FROM conversations v, providers p, xms_bodies b;
        """)
    assert_right(db_url)
    assert len(ids(db, "acme", "shipped blake order")) == 1


def test_a_body_updated(db, db_url, acme):
    query(
        db_url,
        "UPDATE email_bodies SET raw = 'parcel found at the depot' "
        "WHERE raw = 'parcel lost in transit'",
    )
    assert_right(db_url)
    assert ids(db, "acme", "depot") == [acme[0]]
    assert ids(db, "acme", "transit") == []


def test_people_added_renamed_readdressed_and_removed(db, db_url, acme):
    conv = scalar(db_url, "SELECT conversation_id FROM messages WHERE id = %s", (acme[0],))
    query(
        db_url,
        """
        WITH c AS (INSERT INTO contacts (customer_id, display_name)
                   SELECT customer_id, 'Priya Nair' FROM conversations WHERE id = %(v)s
                   RETURNING id)
        INSERT INTO conversation_participants (conversation_id, contact_id, role)
        SELECT %(v)s, id, 'contact' FROM c""",
        {"v": conv},
    )
    assert ids(db, "acme", "priya") == [acme[1], acme[0]]  # earlier messages too
    query(
        db_url, "UPDATE contacts SET display_name = 'Priya Menon' WHERE display_name = 'Priya Nair'"
    )
    assert ids(db, "acme", "nair") == [] and ids(db, "acme", "menon") == [acme[1], acme[0]]
    query(
        db_url,
        "UPDATE email_addresses SET raw = 'dana@new.example' WHERE raw = 'dana@shop.example'",
    )
    assert ids(db, "acme", "@shop.example") == [] and ids(db, "acme", "@new.example") == [
        acme[1],
        acme[0],
    ]
    query(
        db_url,
        "DELETE FROM contact_addresses WHERE email_address_id = "
        "(SELECT id FROM email_addresses WHERE lowered = 'dana@new.example')",
    )
    assert ids(db, "acme", "@new.example") == []
    query(
        db_url,
        "DELETE FROM conversation_participants WHERE contact_id = "
        "(SELECT id FROM contacts WHERE display_name = 'Priya Menon')",
    )
    assert ids(db, "acme", "menon") == []
    assert_right(db_url)


def test_topic_customer_and_message_updates(db, db_url, acme):
    conv = scalar(db_url, "SELECT conversation_id FROM messages WHERE id = %s", (acme[2],))
    query(db_url, "UPDATE conversations SET topic = 'Quarterly invoice' WHERE id = %s", (conv,))
    assert ids(db, "acme", "quarterly") == [acme[2]]
    query(
        db_url,
        "UPDATE messages SET sent_at = sent_at - interval '1 day', "
        "email_body_id = (SELECT id FROM email_bodies WHERE raw = 'any news about my parcel'), "
        "xms_body_id = NULL WHERE id = %s",
        (acme[2],),
    )
    assert ids(db, "acme", "parcel") == [acme[1], acme[0], acme[2]]
    ingest(db, [event(9, "hello", customer="globex")])
    query(
        db_url,
        "UPDATE conversations SET customer_id = "
        "(SELECT id FROM customers WHERE key = 'globex') WHERE id = %s",
        (conv,),
    )
    assert ids(db, "acme", "quarterly") == [] and ids(db, "globex", "quarterly") == [acme[2]]
    assert_right(db_url)


def test_deleted_messages_are_never_found_again(db, db_url, acme):
    # what erasure and retention do: messages, then dedup rows nothing references
    query(db_url, "DELETE FROM messages WHERE id = %s", (acme[0],))
    query(
        db_url,
        "DELETE FROM email_bodies b WHERE NOT EXISTS "
        "(SELECT 1 FROM messages m WHERE m.email_body_id = b.id)",
    )
    assert ids(db, "acme", "transit") == []
    assert ids(db, "acme", "parcel") == [acme[1]]
    query(
        db_url,
        "DELETE FROM conversations WHERE id = (SELECT conversation_id FROM messages WHERE id = %s)",
        (acme[2],),
    )
    assert ids(db, "acme", "invoice") == []
    query(db_url, "DELETE FROM conversations")
    assert scalar(db_url, "SELECT count(*) FROM convdb_search_messages") == 0
    assert scalar(db_url, "SELECT count(*) FROM convdb_search_conversations") == 0


def test_truncating_participants_forgets_the_people(db, db_url, acme):
    query(db_url, "TRUNCATE conversation_participants")
    assert ids(db, "acme", "reyes") == []
    assert_right(db_url)


def test_migrations_build_documents_for_an_existing_database(db, db_url, acme):
    # Written first: this code writes columns of later migrations (053's sender), so
    # the message is stored before they all roll back (and their data with them).
    ingest(db, [event(4, "written before the search existed", key="t3")])
    migrate_before(db_url, "045", force=True)  # and whatever follows it
    assert scalar(db_url, "SELECT to_regclass('convdb_search_messages')") is None
    migrate_lib.run(db_url, echo=lambda _: None)
    assert_right(db_url)
    assert len(ids(db, "acme", "existed")) == 1
    valid = query(
        db_url,
        "SELECT indexrelid::regclass::text, indisvalid FROM pg_index "
        "WHERE indrelid = 'convdb_search_messages'::regclass ORDER BY 1",
    )
    assert valid == [
        ("convdb_search_messages_document_idx", True),
        ("convdb_search_messages_pkey", True),
        ("convdb_search_messages_recent_idx", True),
    ]


def test_a_rename_racing_a_new_message_in_the_conversation(db, db_url, acme):
    """The rename waits for the message's transaction (its conversation is locked), then
    rewrites it too; neither document misses the other's change."""
    writer = psycopg2.connect(db_url)
    try:
        with writer.cursor() as cur:
            cur.execute(
                "INSERT INTO messages (conversation_id, provider_id, direction, email_body_id, "
                "sent_at) SELECT conversation_id, provider_id, 'inbound', email_body_id, %s "
                "FROM messages WHERE id = %s",
                (dt.datetime(2026, 1, 1, tzinfo=dt.UTC), acme[0]),
            )
        done = threading.Event()

        def rename():
            query(
                db_url,
                "UPDATE contacts SET display_name = 'Dana Ortiz' WHERE display_name = 'Dana Reyes'",
            )
            done.set()

        renamer = threading.Thread(target=rename)
        renamer.start()
        assert not done.wait(1.0), "the rename did not wait for the new message"
        writer.commit()
        renamer.join(10)
        assert done.is_set()
    finally:
        writer.close()
    assert_right(db_url)
    assert len(ids(db, "acme", "ortiz")) == 3 and ids(db, "acme", "reyes") == []
    assert len(search("acme", "ortiz parcel", db=db).results) == 3


def test_truncating_messages_takes_their_documents(db, db_url, acme):
    query(db_url, "TRUNCATE messages CASCADE")
    assert scalar(db_url, "SELECT count(*) FROM convdb_search_messages") == 0
    assert ids(db, "acme", "parcel") == []
