"""``python -m bench [--smoke] [--output docs/benchmarks.md] [--keep]``: every figure, one table.

Builds its own databases on the server of ``DATABASE_URL`` (it needs
CREATEDB there) or, when unset, on an embedded PostgreSQL in
``.convdb/bench`` (stopped at the end): a migrated template, then one copy
per dataset. Each figure is measured ``runs`` times (3; 1 with ``--smoke``)
and shown as the median with min-max; its target and whether the median
holds it. ``--smoke`` runs every code path on tiny sizes in well under a
minute (``make bench-smoke``, run by ``.ci/run``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg2

from convdb import migrate as migrate_lib

from . import (
    loader,
    provider_figures,
    reads,
    search_bench,
    serve_figures,
    status_figures,
    worker_figures,
)
from .console_figures import console_figures
from .loader import Scale
from .report import Figure, Run, page_rows, say, table, write

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Sizes:
    runs: int
    queries: int
    small: Scale
    big: Scale
    enqueue_single: int
    enqueue_batch: int
    backlog: int
    noop_due: int
    canonical_due: int
    big_backlog: int
    done_rows: int
    worker_load: int  # events ingested through the worker for the worker-loaded pages
    worker_load_budget: float  # seconds that load may take at the measured rate
    warm: int = 2_000  # conversations of the mixed canonical backlogs (bench/events.py)
    serve_latency: int = 2_000  # webhooks per low-concurrency latency figure
    serve_seconds: float = 10.0  # each 64-connection load
    serve_rss_seconds: float = 60.0  # the sustained load of the memory figure
    smoke_serve: bool = False  # the Python load generator even where wrk is installed
    # docs/scaling.md and the replicated deployment (bench.partitioning, bench.tenant_keys,
    # bench.replication)
    partition_events: int = 20_000  # the backlog drained beside the done history
    partition_history: int = 200_000  # done events spread over partition_days
    partition_days: int = 14
    key_messages: int = 1_000_000  # messages of each prototype schema
    replication_seconds: float = 10.0  # each 64-connection load beside a standby
    # search (bench/search_bench.py): dataset, searches per figure, drain events
    search_messages: int = 1_000_000
    search_customers: int = 1_000
    search_queries: int = 200
    search_drain: int = 20_000
    # delivery status (bench/status_figures.py): reports drained per run
    status_reports: int = 20_000


FULL = Sizes(
    runs=3,
    queries=500,
    small=Scale(customers=10, conversations=1_000, messages=10_000),
    big=Scale(customers=1_000, conversations=100_000, messages=1_000_000),
    enqueue_single=1_000,
    enqueue_batch=20_000,
    backlog=20_000,
    noop_due=20_000,
    canonical_due=20_000,
    big_backlog=200_000,
    done_rows=1_000_000,
    worker_load=1_000_000,
    worker_load_budget=420,
)
SMOKE = Sizes(
    runs=1,
    queries=30,
    small=Scale(customers=3, conversations=100, messages=1_000),
    big=Scale(customers=5, conversations=500, messages=5_000),
    enqueue_single=50,
    enqueue_batch=500,
    backlog=300,
    noop_due=300,
    canonical_due=100,
    big_backlog=1_000,
    done_rows=2_000,
    worker_load=500,
    worker_load_budget=15,
    warm=20,
    serve_latency=100,
    serve_seconds=2.0,
    serve_rss_seconds=3.0,
    smoke_serve=True,
    partition_events=300,
    partition_history=2_000,
    partition_days=3,
    key_messages=20_000,
    replication_seconds=2.0,
    search_messages=3_000,
    search_customers=20,
    search_queries=10,
    search_drain=200,
    status_reports=300,
)


def database_url(base: str, name: str) -> str:
    """``base`` with its database replaced (also for ``postgresql://u@/db?host=/socket``)."""
    return urlunsplit(urlsplit(base)._replace(path=f"/{name}"))


class Server:
    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.created: list[str] = []

    def execute(self, sql: str):
        conn = psycopg2.connect(self.admin_url)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(sql)
                return cur.fetchone() if cur.description else None
        finally:
            conn.close()

    def create(self, purpose: str, template: str | None = None) -> str:
        name = f"convdb_bench_{purpose}_{uuid.uuid4().hex[:6]}"
        self.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        self.created.append(name)
        return name

    def url(self, name: str) -> str:
        return database_url(self.admin_url, name)

    def drop_all(self) -> None:
        for name in reversed(self.created):
            self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.created.clear()


def migrate_figures(server: Server, sizes: Sizes) -> list[Figure]:
    figures = []
    for label, command in (
        (
            "`pw_migrate migrate`, empty database (wall, incl. Python start)",
            ["pw_migrate", "migrate"],
        ),
        ("`convdb migrate`, empty database (wall, incl. Python start)", ["convdb", "migrate"]),
    ):
        figure = Figure(label, "s", at_most=1.0, target_text="≤ 1.0 s")
        for _ in range(sizes.runs):
            name = server.create("migrate")
            figure.runs.append(reads.migrate_wall(command, server.url(name)))
        figures.append(figure)
        say(f"bench: {label}: {figure.value_text()}")
    return figures


def page_figures(url: str, scale: Scale, sizes: Sizes, label: str) -> dict[str, list[float]]:
    customers, conversations = loader.sample_ids(url, scale, sizes.queries)
    result = reads.page_runs(url, customers, conversations, sizes.runs)
    say(
        f"bench: pages at {label}: "
        + ", ".join(f"{k} {statistics.median(v):.2f} ms" for k, v in result.items())
    )
    return result


def read_figures(server: Server, template: str, sizes: Sizes, notes: list[str]) -> list[Figure]:
    small_url = server.url(server.create("small", template))
    say(f"bench: loading {sizes.small.label()} by plain SQL")
    loader.load(small_url, sizes.small, echo=say)
    small = page_figures(small_url, sizes.small, sizes, "small")

    big_url = server.url(server.create("big", template))
    say(f"bench: loading {sizes.big.label()} by plain SQL")
    seconds = loader.load(big_url, sizes.big, echo=say)
    wrong = loader.check_counters(big_url)
    notes.append(
        f"Plain-SQL load of {sizes.big.label()} / {sizes.big.conversations:,} conversations / "
        f"{sizes.big.customers:,} customers: {seconds:.0f} s through every trigger; "
        f"conversations with wrong counters afterwards: {wrong[0]} (messages), "
        f"{wrong[1]} (participants)."
    )
    statuses = loader.add_statuses(big_url)
    notes.append(
        f"The {sizes.big.messages:,}-message dataset's {statuses:,} outbound messages carry a "
        "delivery status (queued, sent, delivered, failed or read) when its pages are read."
    )
    big = page_figures(big_url, sizes.big, sizes, "big")
    label = f"{sizes.big.messages:,} msgs (SQL-loaded)"
    small_label = f"{sizes.small.messages:,} msgs"
    figures = page_rows(small, small_label) + page_rows(big, label, small, small_label)
    overview = Figure(
        f"`SELECT * FROM conversation_overview`, {sizes.big.conversations:,} rows",
        "ms",
        at_most=1000,
        target_text="< 1 s",
    )
    for _ in range(sizes.runs):
        overview.runs.append(reads.whole_overview(big_url)[0] * 1000)
    figures.append(overview)
    return figures


def scaling_figures(server: Server, template: str, sizes: Sizes, notes: list[str]) -> list[Figure]:
    """docs/scaling.md's figures and the receiver beside a synchronous standby."""
    from . import partitioning, replication, tenant_keys

    figures = partitioning.partition_figures(
        server,
        template,
        runs=sizes.runs,
        backlog=sizes.partition_events,
        history=sizes.partition_history,
        days=sizes.partition_days,
        warm=sizes.warm,
    )
    figures += tenant_keys.key_figures(server, runs=sizes.runs, messages=sizes.key_messages)
    smoke = sizes.smoke_serve
    figures += replication.replication_figures(sizes.runs, sizes.replication_seconds, smoke, notes)
    return figures


def _open_server(args) -> tuple[Server, Path | None]:
    url = os.environ.get("DATABASE_URL")
    if url:
        return Server(url), None
    from convdb import embedded

    data_dir = REPO / ".convdb" / "bench"
    say(f"bench: DATABASE_URL is not set; using an embedded PostgreSQL in {data_dir}")
    return Server(embedded.server_url(data_dir)), data_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one run each")
    parser.add_argument("--output", type=Path, help="write the table to this Markdown file")
    parser.add_argument("--keep", action="store_true", help="keep the bench databases")
    parser.add_argument(
        "--only",
        choices=["serve", "providers", "console", "search", "scaling", "status"],
        help="run only these figures (the webhook receiver's, its provider adapters', "
        "the operator console's pages, search's, scaling's: partitioning, customer "
        "keys, a synchronous standby; or delivery status's: worker and receiver ratios)",
    )
    args = parser.parse_args(argv)
    sizes = SMOKE if args.smoke else FULL
    server, data_dir = _open_server(args)
    notes: list[str] = [
        f"{os.cpu_count()} cores shared by PostgreSQL, the benchmark client and the workers; "
        "numbers move with whatever else runs on the machine."
    ]
    try:
        version = server.execute("SHOW server_version")[0]
        template = server.create("template")
        migrate_lib.run(server.url(template), echo=lambda _: None)
        figures = []
        if args.only is None:
            figures += migrate_figures(server, sizes)
            figures += read_figures(server, template, sizes, notes)
            figures += worker_figures.queue_figures(server, template, sizes, notes)
        if args.only in (None, "serve"):
            figures += serve_figures.serve_figures(server, template, sizes, notes)
        if args.only in (None, "serve", "providers"):
            with tempfile.TemporaryDirectory(prefix="convdb-bench-attachments-") as store:
                figures += provider_figures.provider_figures(
                    server, template, sizes, notes, Path(store)
                )
        if args.only in (None, "status"):
            figures += status_figures.status_figures(server, template, sizes, notes)
        if args.only in (None, "console"):
            figures += console_figures(server, template, sizes, notes)
        if args.only in (None, "search"):
            figures += search_bench.search_figures(
                server,
                template,
                search_bench.dataset.Shape(sizes.search_messages, sizes.search_customers),
                sizes.search_queries,
                sizes.search_drain,
                sizes.runs,
                notes,
            )
        if args.only in (None, "scaling"):
            figures += scaling_figures(server, template, sizes, notes)
    finally:
        if not args.keep:
            server.drop_all()
        if data_dir is not None:
            from convdb import embedded

            embedded.stop(data_dir)
    print(table(figures))
    if args.output:
        write(args.output, Run(figures, version, notes))
        say(f"bench: wrote {args.output}")
    return 0
