"""The queue page's reads (convdb.queue.overview) on real PostgreSQL: the chart's minute cache."""

from __future__ import annotations

import psycopg2

from convdb.queue import overview
from convdb.testing import query


def finished(url: str, n: int, minutes_ago: float, worker: str, status: str = "done") -> None:
    query(
        url,
        "INSERT INTO inbound_events (event_type, payload, status, attempts, received_at,"
        " processed_at, locked_by) SELECT 'message.received', jsonb_build_object('n', g), %s, 1,"
        " now() - make_interval(secs => %s + 1), now() - make_interval(secs => %s), %s"
        " FROM generate_series(1, %s) g",
        (status, minutes_ago * 60, minutes_ago * 60, worker, n),
    )


def test_settled_minutes_are_read_once_and_recent_ones_at_every_view(db_url):
    finished(db_url, 7, 30, "host:1")
    finished(db_url, 2, 20, "host:2", status="dead")
    conn = psycopg2.connect(db_url)
    try:
        cache = overview.MinuteCache()
        first = overview.throughput(conn, cache=cache)
        assert sum(first.done) == 7 and sum(first.dead) == 2 and sum(first.received) == 9
        assert len(cache.minutes) == overview.WINDOW_MINUTES - overview.SETTLE_MINUTES - 1
        # settled minutes come from the cache: rows purged since are still counted
        # where they happened; an uncached view no longer sees them
        query(db_url, "DELETE FROM inbound_events WHERE locked_by = 'host:1'")
        finished(db_url, 3, 0, "host:3")  # the current minute is read again
        second = overview.throughput(conn, cache=cache)
        assert sum(second.done) == 10 and sum(second.received) == 12
        assert {w.name: w.finished for w in second.workers} == {
            "host:1": 7,
            "host:2": 2,
            "host:3": 3,
        }
        uncached = overview.throughput(conn)
        assert sum(uncached.done) == 3 and sum(uncached.received) == 5
        # the same series whichever way they were read, for what the table still holds
        third = overview.throughput(conn, cache=overview.MinuteCache())
        assert (third.received, third.done, third.dead) == (
            uncached.received,
            uncached.done,
            uncached.dead,
        )
    finally:
        conn.close()
