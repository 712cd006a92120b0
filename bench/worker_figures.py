"""The queue's figures: enqueue, worker drain (no-op and canonical, one and two
processes, small and large backlog), worker memory, and the pages on data
ingested through the worker."""

from __future__ import annotations

import statistics

import psycopg2

from . import events, queue_bench, reads
from .report import Figure, page_rows, say


def queue_figures(server, template: str, sizes, notes: list[str]) -> list[Figure]:
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

    def drains(kind: str, backlog: int, due: int, processes: int, mix="mixed") -> list[float]:
        rates = []
        for n in range(runs):
            tag = f"{kind}{processes}-{n}-{backlog}-{mix}"
            queue_bench.prepare_backlog(url, backlog, due, tag=tag, mix=mix, warm=sizes.warm)
            result = queue_bench.drain(url, processes=processes, noop=kind == "noop", expected=due)
            rates.append(result.rate)
            rss.append(result.peak_rss_mb)
            if kind == "canonical" and result.rss_samples:
                growth.append(_growth(result.rss_samples, 0.25))
        rate = statistics.median(rates)
        say(f"bench: drain {kind} x{processes}, {due:,} of {backlog:,} ({mix}): {rate:,.0f}/s")
        return rates

    def scope(due: int, backlog: int) -> str:
        if due == backlog:
            return f"{backlog:,} backlog"
        return f"first {due:,} of a {backlog:,} backlog"

    # Canonical backlogs are ``mixed`` (bench/events.py): one event in ten opens
    # a conversation, the others go to conversations that exist, as in the
    # million-message dataset (10 messages per conversation), and the same in
    # every run and every slice of the 200,000-event backlog.
    mixed = "1 in 10 events opens a conversation"
    base = {}
    for kind, due, target in (
        ("noop", sizes.noop_due, 10_000),
        ("canonical", sizes.canonical_due, 5_000),
    ):
        if kind == "canonical":
            say(f"bench: warm-up: {sizes.warm:,} conversations for the mixed backlogs")
            queue_bench.warm_up(url, sizes.warm)
        one = drains(kind, sizes.backlog, due, 1)
        two = drains(kind, sizes.backlog, due, 2)
        base[kind] = one
        figures.append(
            Figure(
                f"worker drain, {kind}, 1 process, {scope(due, sizes.backlog)}"
                + (f", {mixed}" if kind == "canonical" else ""),
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
    worst = drains("canonical", sizes.backlog, sizes.canonical_due, 1, mix="fresh")
    figures.append(
        Figure(
            f"worker drain, canonical, 1 process, {scope(sizes.canonical_due, sizes.backlog)}, "
            "every event opens a conversation (the worst case)",
            "/s",
            runs=worst,
            target_text="none (shown for scale)",
            info=True,
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
    figures += memory_figures(url, sizes, rss, growth)
    canonical_rate = statistics.median(base["canonical"])
    figures += worker_loaded_pages(server, template, sizes, canonical_rate, notes)
    figures += small_worker_loaded_pages(url, sizes)
    return figures


def memory_figures(url: str, sizes, rss: list[float], growth: list[float]) -> list[Figure]:
    """One full drain of the large backlog with the no-op handler: peak RSS, and
    growth after the first 10,000 events (by time, at the run's average rate)."""
    say(f"bench: memory: draining all {sizes.big_backlog:,} events (no-op handler)")
    queue_bench.prepare_backlog(url, sizes.big_backlog, sizes.big_backlog, tag="memory")
    result = queue_bench.drain(url, processes=1, noop=True, expected=sizes.big_backlog)
    after = min(10_000, sizes.big_backlog // 10) / sizes.big_backlog
    return [
        Figure(
            f"worker peak RSS, {sizes.big_backlog:,}-event no-op run",
            "MB",
            runs=[result.peak_rss_mb],
            at_most=150,
            target_text="≤ 150 MB",
            note=f"{result.rate:,.0f}/s",
        ),
        Figure(
            f"worker RSS growth after the first {after * sizes.big_backlog:,.0f} events "
            "of that run",
            "MB",
            runs=[_growth(result.rss_samples, after)],
            at_most=5,
            target_text="flat (≤ 5 MB)",
        ),
        Figure(
            "worker peak RSS, every other drain run (canonical included)",
            "MB",
            runs=rss,
            at_most=150,
            target_text="≤ 150 MB",
        ),
        Figure(
            "worker RSS growth after the first quarter of a canonical run",
            "MB",
            runs=growth,
            at_most=5,
            target_text="flat (≤ 5 MB)",
        ),
    ]


def _growth(samples: list[tuple[float, float]], fraction: float) -> float:
    if not samples:
        return 0.0
    end = samples[-1][0]
    after = [mb for t, mb in samples if t >= end * fraction]
    return max(after) - after[0] if after else 0.0


def worker_loaded_pages(server, template: str, sizes, rate: float, notes) -> list[Figure]:
    """Pages on ``sizes.worker_load`` canonical events ingested by ``convdb
    queue-worker`` (two processes), when the measured canonical rate allows it
    within ``sizes.worker_load_budget``; n/a rows otherwise."""
    label = f"{sizes.worker_load:,} msgs (worker-loaded)"
    projected = sizes.worker_load / (rate * 1.5)
    if projected > sizes.worker_load_budget:
        reason = (
            f"at the canonical drain rate above, {sizes.worker_load:,} events would take "
            f"~{projected / 60:,.0f} min; budget {sizes.worker_load_budget / 60:.0f} min"
        )
        return [
            Figure(f"{page} page {q}, {label}", "ms", target_text=target, missing=reason)
            for page in ("inbox", "conversation")
            for q, target in (("p50", "≤ 2 ms"), ("p95", "≤ 5 ms"))
        ]
    url = server.url(server.create("workerload", template))
    say(f"bench: ingesting {sizes.worker_load:,} events through 2 worker processes")
    events.insert(url, 1, sizes.worker_load, tag="load")
    result = queue_bench.drain(url, processes=2, noop=False, expected=sizes.worker_load)
    notes.append(
        f"Worker-loaded dataset: {sizes.worker_load:,} canonical events drained by two "
        f"`convdb queue-worker --burst` processes in {result.seconds:,.0f} s."
    )
    return _pages(url, sizes, label)


def small_worker_loaded_pages(url: str, sizes) -> list[Figure]:
    """Pages on the messages the drain runs above ingested (few per conversation)."""
    return _pages(url, sizes, None)


def _pages(url: str, sizes, label: str | None) -> list[Figure]:
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("VACUUM ANALYZE")
            cur.execute("SELECT count(*), max(message_count) FROM conversations")
            conversations, biggest = cur.fetchone()
            cur.execute("SELECT count(*) FROM messages")
            messages = cur.fetchone()[0]
            cur.execute(
                "SELECT customer_id FROM conversations GROUP BY 1 ORDER BY count(*) DESC LIMIT %s",
                (sizes.queries,),
            )
            customers = [r[0] for r in cur.fetchall()]
            cur.execute(
                "SELECT id FROM conversations ORDER BY message_count DESC LIMIT %s",
                (sizes.queries,),
            )
            hot = [r[0] for r in cur.fetchall()]
    finally:
        conn.close()
    if not customers or not hot:
        return []
    label = label or (
        f"{messages:,} msgs ingested by the drain runs, {conversations:,} conversations "
        f"of at most {biggest} msg(s)"
    )
    pick = [customers[i % len(customers)] for i in range(sizes.queries)]
    convs = [hot[i % len(hot)] for i in range(sizes.queries)]
    return page_rows(reads.page_runs(url, pick, convs, sizes.runs), label)
