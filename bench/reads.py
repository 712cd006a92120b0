"""Migration wall time and the read path (inbox page, conversation page, whole overview).

Every query is timed from Python through psycopg2 (``execute`` + ``fetchall``,
autocommit, one connection per run) with ``time.perf_counter``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg2

from . import queries
from .report import percentile

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def migrate_wall(command: list[str], url: str) -> float:
    """Seconds for ``command`` (a console script of this venv) to migrate ``url``,
    from process start to exit."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["DATABASE_URL"] = url
    started = time.perf_counter()
    result = subprocess.run(
        [str(BIN / command[0]), *command[1:]],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{command} failed:\n{result.stdout}\n{result.stderr}")
    return elapsed


def time_queries(url: str, sql: str, params: list, *, warmup: int = 20) -> list[float]:
    """Milliseconds of each ``sql`` execution, one per parameter, after a warm-up."""
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for p in params[:warmup]:
                cur.execute(sql, (p,))
                cur.fetchall()
            timings = []
            for p in params:
                started = time.perf_counter()
                cur.execute(sql, (p,))
                cur.fetchall()
                timings.append((time.perf_counter() - started) * 1000)
            return timings
    finally:
        conn.close()


def page_runs(url: str, customers: list, conversations: list, runs: int) -> dict[str, list[float]]:
    """p50 and p95 (ms) of the inbox and conversation pages, one value per run."""
    out: dict[str, list[float]] = {}
    for _ in range(runs):
        for name, sql, params in (
            ("inbox", queries.INBOX_PAGE, customers),
            ("conversation", queries.CONVERSATION_PAGE, conversations),
        ):
            timings = time_queries(url, sql, params)
            out.setdefault(f"{name} p50", []).append(percentile(timings, 50))
            out.setdefault(f"{name} p95", []).append(percentile(timings, 95))
    return out


def whole_overview(url: str) -> tuple[float, int]:
    """Seconds to fetch every row of ``conversation_overview``, and the row count."""
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            started = time.perf_counter()
            cur.execute(queries.WHOLE_OVERVIEW)
            rows = cur.fetchall()
            return time.perf_counter() - started, len(rows)
    finally:
        conn.close()


def repeat(fn: Callable[[], float], runs: int) -> list[float]:
    return [fn() for _ in range(runs)]
