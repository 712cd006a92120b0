"""Which failures are retried: the classification table of docs/queue.md, against the worker."""

from __future__ import annotations

import pytest

from convdb import db as convdb_db
from convdb.exceptions import PayloadError, TransientError
from convdb.queue.worker import WorkerConfig, run
from convdb.testing import query

from ..support import fill


def raise_sqlstate(code: str):
    def handler(event):
        convdb_db.database.execute_sql(
            f"DO $$ BEGIN RAISE EXCEPTION 'simulated {code}' USING ERRCODE = '{code}'; END $$"
        )

    return handler


def raise_python(exc: BaseException):
    def handler(event):
        raise exc

    return handler


# event type -> (handler, retried?)
CASES = {
    "serialization": (raise_sqlstate("40001"), True),
    "deadlock": (raise_sqlstate("40P01"), True),
    "lock-timeout": (raise_sqlstate("55P03"), True),
    "statement-timeout-or-cancel": (raise_sqlstate("57014"), True),
    "handler-asks": (raise_python(TransientError("service down")), True),
    "out-of-range": (raise_sqlstate("22003"), False),
    "index-row-too-big": (raise_sqlstate("54000"), False),
    "unique-violation": (raise_sqlstate("23505"), False),
    "undefined-table": (raise_sqlstate("42P01"), False),
    "overflow": (raise_python(OverflowError("date value out of range")), False),
    "timeout": (raise_python(TimeoutError("timed out")), False),
    "value": (raise_python(ValueError("bad")), False),
    "payload": (raise_python(PayloadError("sent_at: out of range")), False),
}


@pytest.mark.parametrize("batch_size", [1, 100])
def test_only_transient_failures_are_retried(db_url, batch_size):
    for event_type in CASES:
        fill(db_url, [{"n": 1}, {"n": 2}], event_type=event_type)
    fill(db_url, [{"n": 3}], event_type="fine")
    handlers = {t: h for t, (h, _) in CASES.items()} | {"fine": lambda event: None}
    config = WorkerConfig(burst=True, progress_interval=0, batch_size=batch_size, backoff_base=60)
    run(db_url, handlers=handlers, config=config, echo=lambda _: None)
    rows = query(
        db_url,
        "SELECT event_type, status, attempts FROM inbound_events GROUP BY 1, 2, 3 ORDER BY 1, 2",
    )
    expected = {(t, "pending" if retried else "dead", 1) for t, (_, retried) in CASES.items()}
    assert set(rows) == expected | {("fine", "done", 1)}


def test_a_failing_event_costs_its_batch_little(db_url):
    """A batch handler fails its whole batch for one bad event: the batch is
    halved until the bad event is alone, not replayed event by event."""
    batches, singles = [], []

    def one(event):
        singles.append(event.payload["n"])
        if event.payload.get("bad"):
            raise ValueError("bad event")
        convdb_db.database.execute_sql("INSERT INTO customers (name) VALUES ('one')")

    def batch(events):
        batches.append(len(events))
        if any(e.payload.get("bad") for e in events):
            raise ValueError("one of these is bad")
        convdb_db.database.execute_sql(
            "INSERT INTO customers (name) SELECT 'batch' FROM generate_series(1, %s)",
            (len(events),),
        )
        return {}

    payloads = [{"n": n, "bad": n in (37, 150)} for n in range(200)]
    fill(db_url, payloads, event_type="t")
    config = WorkerConfig(burst=True, progress_interval=0, batch_size=100)
    counters = run(
        db_url, handlers={"t": one}, batch_handlers={"t": batch}, config=config, echo=lambda _: None
    )
    assert (counters.done, counters.dead, counters.retried) == (198, 2, 0)
    assert query(db_url, "SELECT count(*) FROM customers") == [(198,)]
    # Each bad event: its batch of 100 fails, then halves of it; a half without
    # it commits whole, the other is halved again, about log2(100) times.
    assert sum(batches) <= 2 * 3 * 100, batches
    assert singles == [37, 150]  # the one-event handler ran for the culprits only
