"""A prototype of ``inbound_events`` partitioned by day, drained against today's table in the
same run (docs/scaling.md).

::

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python -m bench.partitioning [--events 20000] [--history 200000] \\
        [--days 14] [--runs 3] [--smoke]

Each run builds two databases from one migrated template, in an order that
alternates from run to run, with the same rows: ``--history`` finished
(``done``) events spread over the last ``--days`` days (what a queue keeps
until it is purged), then a backlog of ``--events`` canonical events of the
``mixed`` kind (:mod:`bench.events`, after the warm-up of its
conversations), due now. In one of them ``inbound_events`` is then rebuilt
as a declarative partitioned table (:data:`PARTITIONED`): ``PARTITION BY
RANGE (received_at)``, one partition a day, the primary key
``(id, received_at)``, the claim index and the status index as partitioned
indexes. One ``convdb queue-worker --burst`` process drains each
(:func:`bench.queue_bench.drain`: timed from a gate, start-up excluded).
Prints both rates (median, min-max) and the ratio partitioned / today.

The prototype leaves out what the drain does not run: a global unique
``idempotency_key`` (a partitioned table's unique keys must hold the
partition key; the plan in docs/scaling.md keeps the keys in a table of
their own).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics

import psycopg2

from convdb import migrate as migrate_lib

from . import events, queue_bench
from .report import Figure, say
from .runner import Server

# Rebuild inbound_events as a partitioned table with the same columns, checks,
# defaults and indexes (partitioned), rows copied over; {partitions} is one
# CREATE TABLE ... PARTITION OF per day.
PARTITIONED = """
ALTER TABLE inbound_events RENAME TO inbound_events_flat;
CREATE SEQUENCE inbound_events_part_id_seq AS bigint;
CREATE TABLE inbound_events (
    LIKE inbound_events_flat INCLUDING DEFAULTS INCLUDING GENERATED INCLUDING CONSTRAINTS
) PARTITION BY RANGE (received_at);
ALTER TABLE inbound_events ALTER COLUMN id SET DEFAULT nextval('inbound_events_part_id_seq');
ALTER TABLE inbound_events ADD CONSTRAINT inbound_events_part_pkey PRIMARY KEY (id, received_at);
CREATE INDEX inbound_events_part_claim_idx ON inbound_events (
    (CASE status WHEN 'pending' THEN available_at ELSE locked_until END), id
) WHERE status IN ('pending', 'processing');
CREATE INDEX inbound_events_part_status_idx ON inbound_events (status, available_at);
{partitions}
INSERT INTO inbound_events (id, event_type, payload, idempotency_key, received_at,
                            available_at, attempts, status, last_error, locked_by,
                            locked_until, processed_at, claim_group)
SELECT id, event_type, payload, idempotency_key, received_at, available_at, attempts, status,
       last_error, locked_by, locked_until, processed_at, claim_group
  FROM inbound_events_flat;
SELECT setval('inbound_events_part_id_seq', (SELECT max(id) FROM inbound_events));
DROP TABLE inbound_events_flat;
"""
# The storage options of today's table (004's), on each partition.
PARTITION = """
CREATE TABLE inbound_events_{day:%Y%m%d} PARTITION OF inbound_events
    FOR VALUES FROM ('{day:%Y-%m-%d}') TO ('{next:%Y-%m-%d}')
    WITH (autovacuum_analyze_scale_factor = 0.02, autovacuum_vacuum_cost_delay = 0,
          autovacuum_vacuum_insert_scale_factor = 0.05, autovacuum_vacuum_scale_factor = 0.01);
"""
HISTORY = """
INSERT INTO inbound_events (event_type, payload, status, processed_at, attempts, received_at)
SELECT 'message.received', %(payload)s::jsonb, 'done', now(), 1,
       now() - make_interval(secs => (i %% %(days)s) * 86400 + 60)
  FROM generate_series(1, %(count)s) i
"""


def _execute(url: str, sql: str, params=None) -> None:
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
    finally:
        conn.close()


def partition(url: str, days: int) -> int:
    """Rebuild ``inbound_events`` at ``url`` partitioned by day; the number of partitions."""
    today = dt.datetime.now(dt.UTC).date()
    first = today - dt.timedelta(days=days)
    count = days + 3  # the history's days, today, and two ahead
    parts = "".join(
        PARTITION.format(day=first + dt.timedelta(days=d), next=first + dt.timedelta(days=d + 1))
        for d in range(count)
    )
    _execute(url, PARTITIONED.format(partitions=parts))
    return count


def prepare(url: str, backlog: int, history: int, days: int, warm: int, tag: str) -> None:
    queue_bench.warm_up(url, warm)
    payload = events.payload(0, tag="history")
    _execute(url, HISTORY, {"payload": json.dumps(payload), "days": days, "count": history})
    events.insert(url, events.next_index(url), backlog, tag=tag, mix="mixed", warm=warm)


def drain_rate(
    server: Server,
    template: str,
    *,
    layout: str,
    backlog: int,
    history: int,
    days: int,
    warm: int,
    run: int,
) -> float:
    url = server.url(server.create(f"part_{layout}", template))
    prepare(url, backlog, history, days, warm, tag=f"{layout}-{run}")
    if layout == "partitioned":
        partition(url, days)
    _execute(url, "VACUUM ANALYZE")
    result = queue_bench.drain(url, processes=1, noop=False, expected=backlog)
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM inbound_events WHERE status <> 'done'")
            left = cur.fetchone()[0]
            cur.execute("SELECT count(*) FROM messages")
            messages = cur.fetchone()[0]
    finally:
        conn.close()
    if left or messages != backlog + warm:
        raise RuntimeError(f"{layout}: {left} events not done, {messages} messages")
    say(f"bench: partitioning, {layout}: {result.rate:,.0f} events/s")
    return result.rate


def partition_figures(
    server: Server, template: str, *, runs: int, backlog: int, history: int, days: int, warm: int
) -> list[Figure]:
    today = Figure(
        f"worker drain, {backlog:,} events beside {history:,} done, today's inbound_events",
        "/s",
        info=True,
    )
    parted = Figure(
        f"worker drain, the same, inbound_events partitioned by day ({days + 3} partitions)",
        "/s",
        info=True,
    )
    ratio = Figure("worker drain, partitioned / today's", "x", info=True)
    for run in range(runs):
        layouts = ("flat", "partitioned") if run % 2 == 0 else ("partitioned", "flat")
        rates = {}
        for layout in layouts:
            rates[layout] = drain_rate(
                server,
                template,
                layout=layout,
                backlog=backlog,
                history=history,
                days=days,
                warm=warm,
                run=run,
            )
        today.runs.append(rates["flat"])
        parted.runs.append(rates["partitioned"])
        ratio.runs.append(rates["partitioned"] / rates["flat"])
    return [today, parted, ratio]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.partitioning", description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--history", type=int, default=200_000)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    if args.smoke:
        args.events, args.history, args.days, args.runs = 300, 2_000, 3, 1
    server = Server(os.environ["DATABASE_URL"])
    try:
        template = server.create("part_template")
        migrate_lib.run(server.url(template), echo=lambda _: None)
        warm = 20 if args.smoke else events.WARM
        figures = partition_figures(
            server,
            template,
            runs=args.runs,
            backlog=args.events,
            history=args.history,
            days=args.days,
            warm=warm,
        )
    finally:
        server.drop_all()
    for figure in figures:
        print(f"{figure.name}: {figure.value_text()}")
        print(f"    runs: {', '.join(f'{r:,.2f}' for r in figure.runs)}")
    print(f"median ratio: {statistics.median(figures[2].runs):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
