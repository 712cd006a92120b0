"""The operator console's pages at scale: server-side render time per page, p50 and p95.

A database loaded by :mod:`bench.loader` (1,000,000 messages at full size)
gets a queue as a busy day leaves it (``done`` events, a last hour of
traffic, dead events, a small backlog, endpoint counters); every page is then
requested ``queries`` times through the console's ASGI app in process
(Starlette's TestClient: no network, so the time is the server's: routing,
reads, template). Target: each page's p95 within 100 ms. The same-run
baseline is ``QueueManager.stats()`` (what ``convdb queue stats`` runs: an
exact count of every row), against the queue page that reads only the live
rows and estimates ``done``.
"""

from __future__ import annotations

import os
import re
import time
import warnings

import psycopg2

from . import loader
from .report import Figure, percentile, say

PASSWORD = "bench-console-password"

QUEUE_SQL = """
INSERT INTO inbound_events (event_type, payload, status, received_at, available_at,
                            processed_at, locked_by, attempts, last_error)
SELECT 'message.received', jsonb_build_object('n', g, 'body', repeat('x', 200)), s.status,
       now() - make_interval(secs => s.age), now() - make_interval(secs => s.age),
       CASE WHEN s.status IN ('done', 'dead') THEN now() - make_interval(secs => s.age - 1) END,
       CASE WHEN s.status IN ('done', 'dead') THEN 'bench-host:' || (g %% 4) END,
       CASE s.status WHEN 'dead' THEN 5 ELSE 1 END,
       CASE s.status WHEN 'dead' THEN 'PayloadError: from: missing (bench)' END
  FROM generate_series(1, %(n)s) g,
       LATERAL (SELECT %(status)s::text AS status, (%(span)s * random())::float8 AS age) s
"""


def _load_queue(url: str, done: int, hour: int, dead: int, pending: int) -> None:
    conn = psycopg2.connect(url)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            for status, n, span in (
                ("done", done, 86_400 * 3),
                ("done", hour, 3_600),
                ("dead", dead, 86_400),
                ("pending", pending, 600),
            ):
                cur.execute(QUEUE_SQL, {"n": n, "status": status, "span": span})
            cur.execute(
                "INSERT INTO webhook_endpoints (provider_id, adapter, token_hash, token_hint) "
                "SELECT p.id, 'standard', md5(p.id::text) || md5(p.id::text || 'x'), 'bench' "
                "FROM providers p ORDER BY p.id LIMIT 200"
            )
            cur.execute(
                "INSERT INTO webhook_endpoint_deliveries SELECT e.id, "
                "date_trunc('hour', now()) - make_interval(hours => h), 1, 10, now() "
                "FROM webhook_endpoints e, generate_series(0, 30) h"
            )
            cur.execute("VACUUM ANALYZE inbound_events")
    finally:
        conn.close()


def _pages(url: str) -> dict[str, str]:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT min(id) FROM customers")  # the heavy inbox
            customer = cur.fetchone()[0]
            cur.execute("SELECT id FROM conversations ORDER BY message_count DESC LIMIT 1")
            conversation = cur.fetchone()[0]
            cur.execute("SELECT max(id) FROM inbound_events WHERE status = 'dead'")
            dead = cur.fetchone()[0]
    finally:
        conn.close()
    return {
        "queue": "/queue",
        "dead events": "/dead",
        "dead event": f"/events/{dead}",
        "endpoints": "/endpoints",
        "customers": "/customers",
        "inbox (heaviest customer)": f"/customers/{customer}",
        "conversation (busiest)": f"/conversations/{conversation}",
    }


def _client(url: str):
    warnings.simplefilter("ignore", DeprecationWarning)
    from starlette.testclient import TestClient

    from convdb.console.app import create_app
    from convdb.console.settings import ConsoleSettings

    os.environ["CONVDB_BENCH_CONSOLE_PASSWORD"] = PASSWORD
    settings = ConsoleSettings(password_ref="env:CONVDB_BENCH_CONSOLE_PASSWORD")
    http = TestClient(create_app(settings, read_url=url, write_url=url))
    page = http.get("/login").text
    login_token = re.search(r'name="login_token" value="([^"]+)"', page).group(1)
    http.post("/login", data={"password": PASSWORD, "login_token": login_token})
    return http


def console_figures(server, template: str, sizes, notes: list[str]) -> list[Figure]:
    scale = sizes.big
    url = server.url(server.create("console", template))
    say(f"bench: console: loading {scale.label()} by plain SQL, and a queue")
    loader.load(url, scale, echo=say)
    loader.add_statuses(url)  # the conversation page shows them
    small = scale.messages <= 10_000
    _load_queue(
        url,
        done=1_000 if small else 500_000,
        hour=500 if small else 30_000,
        dead=200 if small else 20_000,
        pending=50 if small else 2_000,
    )
    figures = []
    with _client(url) as http:
        for label, path in _pages(url).items():
            times = []
            for _ in range(3):
                assert http.get(path).status_code == 200  # warm
            for _ in range(sizes.queries):
                started = time.perf_counter()
                answer = http.get(path)
                times.append((time.perf_counter() - started) * 1000)
                assert answer.status_code == 200, (path, answer.status_code)
            p50, p95 = percentile(times, 50), percentile(times, 95)
            figure = Figure(
                f"console page: {label}, p95 (p50 {p50:.1f} ms), {scale.label()}",
                "ms",
                runs=[p95],
                at_most=100,
                target_text="p95 ≤ 100 ms",
            )
            figures.append(figure)
            say(f"bench: console {label}: p50 {p50:.1f} ms, p95 {p95:.1f} ms")
    from convdb.db import closing, open_database
    from convdb.queue import QueueManager

    stats = []
    with closing(open_database(url)) as db:
        manager = QueueManager(db)
        for _ in range(max(3, sizes.queries // 10)):
            started = time.perf_counter()
            manager.stats()
            stats.append((time.perf_counter() - started) * 1000)
    figures.append(
        Figure(
            "baseline: `convdb queue stats` (QueueManager.stats, every row counted), p50",
            "ms",
            runs=[percentile(stats, 50)],
            info=True,
        )
    )
    notes.append(
        "Console pages are timed in process through the ASGI app (no network): routing, "
        "the read connection's queries and the template, on the shared machine."
    )
    return figures


__all__ = ["console_figures"]
