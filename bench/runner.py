"""``python -m bench [--smoke] [--output BENCHMARKS.md] [--keep]``: every figure, one table.

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
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg2

from convdb import migrate as migrate_lib

from . import loader, queue_bench, reads
from .loader import Scale
from .report import Figure, markdown, table, write

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


FULL = Sizes(
    runs=3,
    queries=500,
    small=Scale(customers=10, conversations=1_000, messages=10_000),
    big=Scale(customers=1_000, conversations=100_000, messages=1_000_000),
    enqueue_single=1_000,
    enqueue_batch=20_000,
    backlog=20_000,
    noop_due=20_000,
    canonical_due=2_000,
    big_backlog=200_000,
    done_rows=1_000_000,
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
)


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
        return urlunsplit(urlsplit(self.admin_url)._replace(path=f"/{name}"))

    def drop_all(self) -> None:
        for name in reversed(self.created):
            self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.created.clear()


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


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


def page_rows(
    pages: dict[str, list[float]], label: str, baseline=None, baseline_label: str = ""
) -> list[Figure]:
    figures = []
    for page, title in (("inbox", "inbox page"), ("conversation", "conversation page")):
        for q, limit in (("p50", 2.0), ("p95", 5.0)):
            figures.append(
                Figure(
                    f"{title} {q}, {label}",
                    "ms",
                    runs=pages[f"{page} {q}"],
                    at_most=limit,
                    target_text=f"≤ {limit:g} ms",
                )
            )
        if baseline is not None:
            ratios = [
                big / small
                for big, small in zip(pages[f"{page} p50"], baseline[f"{page} p50"], strict=True)
            ]
            figures.append(
                Figure(
                    f"{title} p50, {label} / {baseline_label}",
                    "x",
                    runs=ratios,
                    at_most=1.5,
                    target_text="≤ 1.5x",
                )
            )
    return figures


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


def queue_figures(server: Server, template: str, sizes: Sizes, notes: list[str]) -> list[Figure]:
    url = server.url(server.create("queue", template))
    runs = sizes.runs
    single = Figure("enqueue one event + commit, p50", "ms", at_most=2.0, target_text="≤ 2 ms")
    batch = Figure(
        "enqueue_many, batches of 1,000", "/s", at_least=20_000, target_text="≥ 20,000/s"
    )
    for _ in range(runs):
        single.runs.append(queue_bench.enqueue_single(url, sizes.enqueue_single))
        batch.runs.append(queue_bench.enqueue_batch(url, sizes.enqueue_batch))
    say(f"bench: enqueue: {single.value_text()}; {batch.value_text()}")
    figures = [single, batch]
    rss: list[float] = []
    growth: list[float] = []

    def drains(kind: str, backlog: int, due: int, processes: int) -> list[float]:
        rates = []
        for n in range(runs):
            queue_bench.prepare_backlog(url, backlog, due, tag=f"{kind}{processes}-{n}-{backlog}")
            result = queue_bench.drain(url, processes=processes, noop=kind == "noop", expected=due)
            rates.append(result.rate)
            rss.append(result.peak_rss_mb)
            if kind == "canonical" and result.rss_samples:
                growth.append(_growth(result.rss_samples))
        rate = statistics.median(rates)
        say(f"bench: drain {kind} x{processes}, {due:,} of {backlog:,}: {rate:,.0f}/s")
        return rates

    def scope(due: int, backlog: int) -> str:
        return (
            f"{backlog:,} backlog" if due == backlog else f"first {due:,} of a {backlog:,} backlog"
        )

    base = {}
    for kind, due, target in (
        ("noop", sizes.noop_due, 10_000),
        ("canonical", sizes.canonical_due, 5_000),
    ):
        one = drains(kind, sizes.backlog, due, 1)
        two = drains(kind, sizes.backlog, due, 2)
        base[kind] = one
        figures.append(
            Figure(
                f"worker drain, {kind}, 1 process, {scope(due, sizes.backlog)}",
                "/s",
                runs=one,
                at_least=target,
                target_text=f"≥ {target:,}/s",
            )
        )
        figures.append(
            Figure(
                f"worker drain, {kind}, 2 processes / 1",
                "x",
                runs=[b / a for a, b in zip(one, two, strict=True)],
                at_least=1.5,
                target_text="≥ 1.5x",
            )
        )
    say(f"bench: inserting {sizes.done_rows:,} done events")
    queue_bench.mark_done_rows(url, sizes.done_rows)
    for kind, due in (("noop", sizes.noop_due), ("canonical", sizes.canonical_due)):
        due = min(due, sizes.big_backlog)
        big = drains(kind, sizes.big_backlog, due, 1)
        figures.append(
            Figure(
                f"worker drain, {kind}, {scope(due, sizes.big_backlog)} + "
                f"{sizes.done_rows:,} done rows, vs {sizes.backlog:,} backlog",
                "%",
                runs=[(b / a - 1) * 100 for a, b in zip(base[kind], big, strict=True)],
                at_least=-20,
                target_text="at most 20% slower",
            )
        )
    figures.append(
        Figure(
            "worker peak RSS (any drain run)", "MB", runs=rss, at_most=150, target_text="≤ 150 MB"
        )
    )
    figures.append(
        Figure(
            "worker RSS growth after the first quarter of a canonical run",
            "MB",
            runs=growth,
            at_most=5,
            target_text="flat (≤ 5 MB)",
            note="over the canonical runs above, not a 200,000-event run",
        )
    )
    figures += worker_loaded_pages(url, sizes, notes)
    return figures


def _growth(samples: list[tuple[float, float]]) -> float:
    end = samples[-1][0]
    after = [mb for t, mb in samples if t >= end / 4]
    return max(after) - after[0] if after else 0.0


def worker_loaded_pages(url: str, sizes: Sizes, notes: list[str]) -> list[Figure]:
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("VACUUM ANALYZE")
            cur.execute("SELECT count(*) FROM messages")
            messages = cur.fetchone()[0]
    finally:
        conn.close()
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT customer_id FROM conversations GROUP BY 1 ORDER BY count(*) DESC LIMIT %s",
                (sizes.queries,),
            )
            customers = [r[0] for r in cur.fetchall()]
            cur.execute(
                "SELECT id FROM conversations ORDER BY message_count DESC LIMIT %s",
                (sizes.queries,),
            )
            conversations = [r[0] for r in cur.fetchall()]
    finally:
        conn.close()
    if not customers or not conversations:
        return []
    pick = [customers[i % len(customers)] for i in range(sizes.queries)]
    convs = [conversations[i % len(conversations)] for i in range(sizes.queries)]
    pages = reads.page_runs(url, pick, convs, sizes.runs)
    notes.append(
        f"Worker-loaded dataset: {messages:,} messages ingested by the drain runs above; "
        f"a 1,000,000-message load through the worker was not run (at the measured "
        f"canonical rate it would take hours)."
    )
    return page_rows(pages, f"{messages:,} msgs (worker-loaded)")


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
        figures = migrate_figures(server, sizes)
        figures += read_figures(server, template, sizes, notes)
        figures += queue_figures(server, template, sizes, notes)
    finally:
        if not args.keep:
            server.drop_all()
        if data_dir is not None:
            from convdb import embedded

            embedded.stop(data_dir)
    print(table(figures))
    if args.output:
        write(args.output, markdown(figures, server_version=version, notes=notes))
        say(f"bench: wrote {args.output}")
    return 0
