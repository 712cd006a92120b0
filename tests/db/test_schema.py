"""The migrated schema: models agree with it, constraints hold, timestamps are UTC, views add up."""

from __future__ import annotations

import datetime as dt

import peewee
import psycopg2
import pytest

from convdb import dedup
from convdb import migrate as migrate_lib
from convdb.db import ConvdbDatabase
from convdb.models import (
    ALL_MODELS,
    Attachment,
    Contact,
    Conversation,
    ConversationParticipant,
    Customer,
    Message,
    MessageAttachment,
    Provider,
)

UTC = dt.UTC


def _db_type(field: peewee.Field) -> str:
    if isinstance(field, peewee.ForeignKeyField):
        field = field.rel_field
    ddl = field.field_type.upper()
    if ddl.startswith("BIGINT") or ddl in ("BIGAUTO", "BIGINT"):
        return "bigint"
    return {
        "TEXT": "text",
        "INT": "integer",
        "INTEGER": "integer",
        "TIMESTAMPTZ": "timestamp with time zone",
        "JSONB": "jsonb",
        "BOOL": "boolean",
        "BLOB": "bytea",
    }[ddl]


def _internal(table: str) -> bool:
    return table.startswith(("migratehistory", "convdb_"))


def test_models_match_the_migrated_database(db):
    rows = db.execute_sql(
        "SELECT table_name, column_name, data_type, is_nullable "
        "FROM information_schema.columns c JOIN information_schema.tables t "
        "USING (table_schema, table_name) "
        "WHERE table_schema = 'public' AND t.table_type = 'BASE TABLE'"
    ).fetchall()
    database: dict[str, dict[str, tuple[str, bool]]] = {}
    for table, column, data_type, nullable in rows:
        database.setdefault(table, {})[column] = (data_type, nullable == "YES")

    model_tables = {m._meta.table_name for m in ALL_MODELS}
    assert {t for t in database if not _internal(t)} == model_tables
    for model in ALL_MODELS:
        table = model._meta.table_name
        expected = {
            f.column_name: (_db_type(f), bool(f.null) and not f.primary_key)
            for f in model._meta.sorted_fields
        }
        assert expected == database[table], f"model {model.__name__} drifted from {table}"


def test_model_foreign_keys_match_the_database(db):
    rows = db.execute_sql(
        """
        SELECT cl.relname, a.attname, ref.relname
          FROM pg_constraint c
          JOIN pg_class cl ON cl.oid = c.conrelid
          JOIN pg_class ref ON ref.oid = c.confrelid
          JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
          JOIN pg_namespace n ON n.oid = cl.relnamespace
         WHERE c.contype = 'f' AND n.nspname = 'public'
        """
    ).fetchall()
    in_db = {(t, col, ref) for t, col, ref in rows if not _internal(t)}
    in_models = {
        (m._meta.table_name, f.column_name, f.rel_model._meta.table_name)
        for m in ALL_MODELS
        for f in m._meta.sorted_fields
        if isinstance(f, peewee.ForeignKeyField)
    }
    assert in_models == in_db


@pytest.fixture
def acme(db):
    customer = Customer.create(name="Acme")
    provider = Provider.create(customer=customer, kind="sms", name="twilio")
    conversation = Conversation.create(customer=customer)
    return customer, provider, conversation


def _violation(db, sql, params=()):
    with pytest.raises(peewee.IntegrityError) as info, db.atomic():
        db.execute_sql(sql, params)
    return info.value.orig.pgcode


def test_foreign_keys_are_enforced(db, acme):
    code = _violation(
        db,
        "INSERT INTO messages (conversation_id, provider_id, direction, sent_at) "
        "VALUES (999999, %s, 'inbound', now())",
        (acme[1].id,),
    )
    assert code == "23503"
    code = _violation(db, "INSERT INTO attachments (url_id) VALUES (424242)")
    assert code == "23503"


def test_primary_keys_are_enforced(db, acme):
    contact = Contact.create(customer=acme[0])
    ConversationParticipant.create(conversation=acme[2], contact=contact, role="contact")
    code = _violation(
        db,
        "INSERT INTO conversation_participants VALUES (%s, %s, 'contact')",
        (acme[2].id, contact.id),
    )
    assert code == "23505"
    # the same contact in the other role is a different participant row
    ConversationParticipant.create(conversation=acme[2], contact=contact, role="customer")


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO providers (customer_id, kind, name) VALUES ({c}, 'fax', 'x')",
        "INSERT INTO endpoint_mappings (customer_id, provider_id, kind, address, normalized, hash)"
        " VALUES ({c}, {p}, 'voice', 'a', 'a', 1)",
        "INSERT INTO conversation_participants VALUES ({v}, {k}, 'owner')",
        "INSERT INTO messages (conversation_id, provider_id, direction, sent_at)"
        " VALUES ({v}, {p}, 'sideways', now())",
        "INSERT INTO inbound_events (event_type, payload, status) VALUES ('x', '{{}}', 'lost')",
        "INSERT INTO inbound_events (event_type, payload, attempts) VALUES ('x', '{{}}', -1)",
    ],
)
def test_check_constraints_are_enforced(db, acme, sql):
    contact = Contact.create(customer=acme[0])
    sql = sql.format(c=acme[0].id, p=acme[1].id, v=acme[2].id, k=contact.id)
    assert _violation(db, sql) == "23514"


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO customers (name) VALUES (NULL)",
        "INSERT INTO providers (customer_id, kind, name) VALUES ({c}, 'sms', NULL)",
        "INSERT INTO messages (conversation_id, provider_id, direction)"
        " VALUES ({v}, {p}, 'inbound')",
        "INSERT INTO inbound_events (event_type) VALUES ('x')",
        "INSERT INTO endpoint_mappings (customer_id, provider_id, kind, address, hash)"
        " VALUES ({c}, {p}, 'sms', '+1', 1)",
    ],
)
def test_not_null_is_enforced(db, acme, sql):
    sql = sql.format(c=acme[0].id, p=acme[1].id, v=acme[2].id)
    assert _violation(db, sql) == "23502"


def test_a_message_has_at_most_one_body_and_body_id_follows_it(db, acme):
    email = dedup.intern_email_body(db, "hello")
    sms = dedup.intern_xms_body(db, "hi")
    code = _violation(
        db,
        "INSERT INTO messages (conversation_id, provider_id, direction, sent_at, "
        "email_body_id, xms_body_id) VALUES (%s, %s, 'inbound', now(), %s, %s)",
        (acme[2].id, acme[1].id, email, sms),
    )
    assert code == "23514"
    message = Message.create(
        conversation=acme[2],
        provider=acme[1],
        direction="inbound",
        xms_body=sms,
        sent_at=dt.datetime.now(UTC),
    )
    assert Message.get_by_id(message.id).body_id == sms
    message.direction = "outbound"
    message.save()  # only dirty columns are written: the generated body_id is left alone
    assert Message.get_by_id(message.id).direction == "outbound"


def test_updated_at_is_maintained(db):
    db.execute_sql(
        "INSERT INTO customers (id, name, created_at, updated_at) "
        "VALUES (77, 'Old', '2020-01-01Z', '2020-01-01Z')"
    )
    db.execute_sql("UPDATE customers SET name = 'Old' WHERE id = 77")  # no change
    assert Customer.get_by_id(77).updated_at == dt.datetime(2020, 1, 1, tzinfo=UTC)
    db.execute_sql("UPDATE customers SET name = 'New' WHERE id = 77")
    row = Customer.get_by_id(77)
    assert row.created_at == dt.datetime(2020, 1, 1, tzinfo=UTC)
    assert dt.datetime.now(UTC) - row.updated_at < dt.timedelta(minutes=1)
    for table in ("providers", "contacts", "conversations"):
        (count,) = db.execute_sql(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal "
            "AND tgname = %s",
            (table, f"{table}_set_updated_at"),
        ).fetchone()
        assert count == 1, table


def test_timestamps_are_utc_whatever_the_session_time_zone(db, db_url, acme):
    other = psycopg2.connect(db_url)
    try:
        other.autocommit = True
        with other.cursor() as cur:
            cur.execute("SET TIME ZONE 'America/New_York'")
            cur.execute(
                "INSERT INTO messages (conversation_id, provider_id, direction, sent_at, "
                "received_at) VALUES (%s, %s, 'inbound', '2025-11-05T10:00:00+02:00', "
                "'2025-11-05 01:30') RETURNING id",
                (acme[2].id, acme[1].id),
            )
            (message_id,) = cur.fetchone()
    finally:
        other.close()
    row = Message.get_by_id(message_id)
    assert row.sent_at == dt.datetime(2025, 11, 5, 8, 0, tzinfo=UTC)
    assert row.sent_at.utcoffset() == dt.timedelta(0)
    # a naive literal is read in the *writer's* session zone (New York): 06:30 UTC
    assert row.received_at == dt.datetime(2025, 11, 5, 6, 30, tzinfo=UTC)
    assert db.execute_sql("SHOW timezone").fetchone()[0] == "UTC"


def test_models_refuse_naive_and_convert_aware_datetimes(db, acme):
    with pytest.raises(ValueError, match="naive datetime"):
        Message.create(
            conversation=acme[2],
            provider=acme[1],
            direction="inbound",
            sent_at=dt.datetime(2025, 11, 5, 10, 0),
        )
    paris = dt.timezone(dt.timedelta(hours=1))
    message = Message.create(
        conversation=acme[2],
        provider=acme[1],
        direction="inbound",
        sent_at=dt.datetime(2025, 11, 5, 10, 0, tzinfo=paris),
    )
    assert Message.get_by_id(message.id).sent_at == dt.datetime(2025, 11, 5, 9, 0, tzinfo=UTC)


def test_connections_and_database_default_are_utc(empty_db_url):
    conn = psycopg2.connect(empty_db_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT current_database()")
        (name,) = cur.fetchone()
        cur.execute(f"ALTER DATABASE \"{name}\" SET timezone TO 'America/New_York'")
    conn.close()
    db = ConvdbDatabase(empty_db_url)
    db.connect()
    assert db.execute_sql("SHOW timezone").fetchone()[0] == "UTC"
    db.close()
    migrate_lib.run(empty_db_url, echo=lambda _: None)
    conn = psycopg2.connect(empty_db_url)  # a plain client, after the migrations
    with conn.cursor() as cur:
        cur.execute("SHOW timezone")
        assert cur.fetchone()[0] == "UTC"
    conn.close()


def test_views_report_columns_and_values(db, acme):
    customer, provider, conversation = acme
    empty = Conversation.create(customer=customer, topic="nothing yet")
    us = Contact.create(customer=customer, display_name="Acme")
    jane = Contact.create(customer=customer, display_name="Jane")
    ConversationParticipant.create(conversation=conversation, contact=us, role="customer")
    ConversationParticipant.create(conversation=conversation, contact=jane, role="contact")
    t0 = dt.datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    first = Message.create(
        conversation=conversation,
        provider=provider,
        direction="inbound",
        xms_body=dedup.intern_xms_body(db, "  Hello\tthere "),
        sent_at=t0,
    )
    second = Message.create(
        conversation=conversation,
        provider=provider,
        direction="outbound",
        xms_body=dedup.intern_xms_body(db, "Hi!"),
        sent_at=t0 + dt.timedelta(minutes=3),
        received_at=t0 + dt.timedelta(minutes=4),
    )
    for url in ("https://x.example/1.png", " https://x.example/2.png"):
        attachment = Attachment.create(url=dedup.intern_attachment_url(db, url))
        MessageAttachment.create(message=second, attachment=attachment)

    cursor = db.execute_sql("SELECT * FROM conversation_overview ORDER BY conversation_id")
    assert [c.name for c in cursor.description] == [
        "conversation_id",
        "customer_id",
        "last_message_at",
        "message_count",
        "participant_count",
    ]
    rows = {r[0]: r for r in cursor.fetchall()}
    assert rows[conversation.id] == (
        conversation.id,
        customer.id,
        t0 + dt.timedelta(minutes=3),
        2,
        2,
    )
    assert rows[empty.id] == (empty.id, customer.id, None, 0, 0)

    cursor = db.execute_sql(
        "SELECT * FROM conversation_messages WHERE conversation_id = %s ORDER BY sent_at DESC",
        (conversation.id,),
    )
    assert [c.name for c in cursor.description] == [
        "conversation_id",
        "message_id",
        "direction",
        "provider_id",
        "sent_at",
        "received_at",
        "body_text",
        "attachments_count",
        "status",
        "status_at",
    ]
    newest, oldest = cursor.fetchall()
    assert newest == (
        conversation.id,
        second.id,
        "outbound",
        provider.id,
        t0 + dt.timedelta(minutes=3),
        t0 + dt.timedelta(minutes=4),
        "Hi!",
        2,
        None,
        None,
    )
    assert oldest[1] == first.id and oldest[6] == "  Hello\tthere " and oldest[7] == 0


def test_email_bodies_show_in_conversation_messages(db, acme):
    customer, _, conversation = acme
    email = Provider.create(customer=customer, kind="email", name="sendgrid")
    message = Message.create(
        conversation=conversation,
        provider=email,
        direction="inbound",
        email_body=dedup.intern_email_body(db, "Dear team,\n\nthanks."),
        sent_at=dt.datetime.now(UTC),
    )
    (text,) = db.execute_sql(
        "SELECT body_text FROM conversation_messages WHERE message_id = %s", (message.id,)
    ).fetchone()
    assert text == "Dear team,\n\nthanks."
