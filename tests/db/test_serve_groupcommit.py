"""The group-commit writer on real PostgreSQL: grouping, duplicates, nonces, refused rows."""

from __future__ import annotations

import asyncio

import pytest
from psycopg2.extensions import parse_dsn

from convdb import db as convdb_db
from convdb.serve import endpoints
from convdb.serve.adapters import Delivery, Rejection
from convdb.serve.groupcommit import GroupWriter
from convdb.testing import query, scalar


@pytest.fixture
def endpoint_ids(db_url):
    database = convdb_db.open_database(db_url)
    try:
        ids = [
            endpoints.add(
                database,
                "acme",
                name,
                kind="sms",
                adapter="standard",
                secret_ref="env:X",
                known_adapters=["standard"],
            ).id
            for name in ("one", "two")
        ]
    finally:
        database.close()
    return ids


async def store_all(writer: GroupWriter, items):
    async def one(endpoint_id, key, delivery):
        try:
            return await writer.store(endpoint_id, key, delivery, timeout=10)
        except Rejection as exc:
            return exc.reason

    return await asyncio.gather(*(one(*item) for item in items))


def test_concurrent_rows_share_commits_and_duplicates_are_stored_once(db_url, endpoint_ids):
    groups: list[int] = []
    writer = GroupWriter(db_url, on_group=lambda rows, _s: groups.append(rows))
    first = endpoint_ids[0]
    items = [
        (first, f"hook:{first}:k{i % 150}", Delivery("message.received", {"i": i}, f"k{i}"))
        for i in range(300)
    ]
    try:
        results = asyncio.run(store_all(writer, items))
    finally:
        writer.close()
    assert results.count("stored") == 150 and results.count("duplicate") == 150
    assert scalar(db_url, "SELECT count(*) FROM inbound_events") == 150
    assert sum(groups) == 300 and len(groups) < 300  # rows really were grouped
    # The first of each pair in arrival order is the stored one.
    assert query(
        db_url,
        "SELECT payload->>'i' FROM inbound_events WHERE idempotency_key = %s",
        (f"hook:{first}:k7",),
    ) == [("7",)]


def test_a_nonce_is_consumed_with_its_event(db_url, endpoint_ids):
    one, two = endpoint_ids
    writer = GroupWriter(db_url)

    def delivery(key: str, nonce: str):
        return Delivery("message.received", {"k": key}, key, nonce=nonce, nonce_ttl=600)

    try:
        first = asyncio.run(store_all(writer, [(one, f"hook:{one}:a", delivery("a", "n1"))]))
        later = asyncio.run(
            store_all(
                writer,
                [
                    (one, f"hook:{one}:a", delivery("a", "n1")),  # the same delivery again: a retry
                    (one, f"hook:{one}:b", delivery("b", "n1")),  # another body with a used nonce
                    (
                        two,
                        f"hook:{two}:b",
                        delivery("b", "n1"),
                    ),  # another endpoint's nonces are its own
                    (one, f"hook:{one}:c", delivery("c", "n2")),
                    (one, f"hook:{one}:d", delivery("d", "n2")),  # a nonce twice in one group
                ],
            )
        )
    finally:
        writer.close()
    assert first == ["stored"]
    assert later == ["duplicate", "replayed", "stored", "stored", "replayed"]
    keys = {row[0] for row in query(db_url, "SELECT idempotency_key FROM inbound_events")}
    assert keys == {f"hook:{one}:a", f"hook:{two}:b", f"hook:{one}:c"}
    assert scalar(db_url, "SELECT count(*) FROM webhook_nonces") == 3


def test_a_refused_row_fails_alone(db_url, endpoint_ids):
    one = endpoint_ids[0]
    writer = GroupWriter(db_url)
    items = [(one, f"hook:{one}:ok{i}", Delivery("x", {"i": i}, f"ok{i}")) for i in range(20)]
    # a nonce for an endpoint that does not exist: webhook_nonces' foreign key refuses it
    gone = max(endpoint_ids) + 1000
    items.insert(10, (gone, f"hook:{gone}:bad", Delivery("x", {"i": -1}, "bad", nonce="n-1")))
    try:
        results = asyncio.run(store_all(writer, items))
    finally:
        writer.close()
    assert results[10] == "refused_by_database"
    assert results[:10] + results[11:] == ["stored"] * 20
    assert scalar(db_url, "SELECT count(*) FROM inbound_events") == 20


def test_a_closed_writer_refuses_new_rows_as_unavailable(db_url, endpoint_ids):
    from convdb.serve.pg import Unavailable

    writer = GroupWriter(db_url)
    writer.close()
    with pytest.raises(Unavailable, match="shutting down"):
        asyncio.run(writer.store(endpoint_ids[0], "k", Delivery("x", {}, "k"), timeout=5))


def test_a_commit_lost_with_its_connection_is_never_answered_as_stored(
    server, db_url, endpoint_ids
):
    """The connection dies during the group's commit (its transaction rolled back) and the
    database refuses a new one: every row of the group is unavailable (503), not stored."""
    from convdb.serve.pg import Unavailable

    name = parse_dsn(db_url)["dbname"]  # a socket URL carries ?host=/dir after the name

    class CutAtCommit(GroupWriter):
        def _store(self, conn, group):
            found = super()._store(conn, group)
            pid = conn.info.backend_pid
            server.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            server.execute(f"SELECT pg_terminate_backend({pid})")
            return found

    first = endpoint_ids[0]
    writer = CutAtCommit(db_url, retry_interval=60)
    items = [
        (first, f"hook:{first}:cut{i}", Delivery("message.received", {"i": i}, f"cut{i}"))
        for i in range(3)
    ]

    async def attempt(item):
        try:
            return await writer.store(*item, timeout=10)
        except Unavailable:
            return "unavailable"

    async def all_at_once():
        return await asyncio.gather(*(attempt(item) for item in items))

    try:
        results = asyncio.run(all_at_once())
    finally:
        server.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        writer.close()
    assert results == ["unavailable"] * 3
    assert scalar(db_url, "SELECT count(*) FROM inbound_events") == 0


def test_stored_events_are_counted_per_endpoint_and_hour(db_url, endpoint_ids):
    """The console's counters (migration 050): stored events only, per endpoint, one row
    per hour and backend; a redelivery is not counted again."""
    first, second = endpoint_ids
    writer = GroupWriter(db_url)
    items = [
        (e, f"hook:{e}:k{i}", Delivery("message.received", {"i": i}, f"k{i}"))
        for e, n in ((first, 30), (second, 5))
        for i in range(n)
    ]
    try:
        asyncio.run(store_all(writer, items))
        asyncio.run(store_all(writer, items[:10]))  # redelivered: duplicates
    finally:
        writer.close()
    rows = query(
        db_url,
        "SELECT endpoint_id, sum(deliveries), count(DISTINCT hour), max(last_delivery_at) <= now()"
        " FROM webhook_endpoint_deliveries GROUP BY 1 ORDER BY 1",
    )
    assert rows == [(first, 30, 1, True), (second, 5, 1, True)]
