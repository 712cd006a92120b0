"""The measuring tools of ``docs/performance.md`` on tiny sizes: ``bench.serve_cpu``
(CPU per webhook from /proc) and ``bench.profiling`` (cProfile and pg_stat_statements
on a private server)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from convdb.testing import query

from ..pgcluster import Unavailable, find_bindir

REPO = Path(__file__).resolve().parents[2]


def _run(args, env, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_serve_cpu_charges_each_receiver_its_own_cpu_per_webhook(server, tmp_path):
    out = tmp_path / "cpu.json"
    env = {**os.environ, "DATABASE_URL": server.admin_url}
    result = _run(["bench.serve_cpu", "--smoke", "--json", str(out)], env)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {r["variant"]: r for r in json.loads(out.read_text())}
    assert set(rows) == {"empty", "group", "naive"}
    for row in rows.values():
        assert row["webhooks"] > 0 and row["server_us"] > 0, row
    # Group commit spends less than a commit per webhook in PostgreSQL. (The floor has no
    # database, but the server's background processes work for every database of a
    # shared server: its PostgreSQL column is not compared.)
    assert rows["group"]["pg_us"] < rows["naive"]["pg_us"]
    total = {v: r["server_us"] + r["pg_us"] for v, r in rows.items()}
    assert total["empty"] < total["group"] < total["naive"]
    assert "total / empty" in result.stdout and "total / naive" in result.stdout
    left = query(
        server.admin_url,
        "SELECT datname FROM pg_database WHERE datname LIKE %s",
        ("convdb_bench_cpu%",),
    )
    assert left == []


def test_profile_of_a_drain_shows_the_worker_thread_and_the_queue_statements():
    try:
        find_bindir(install=False)
    except Unavailable as exc:
        pytest.skip(str(exc))
    result = _run(
        ["bench.profiling", "drain", "--kind", "noop", "--events", "300", "--top", "60"], os.environ
    )
    assert result.returncode == 0, result.stderr[-3000:]
    text = result.stdout
    assert "no profiler" in text and "under cProfile (the worker thread)" in text
    # The worker thread's own calls, not only the main thread waiting for it.
    assert "_process_batch (queue/dispatch.py" in text
    assert "decode (queue/limits.py" in text
    sql = text[text.index("SQL, by total execution time") :]
    assert "WITH due AS" in sql  # the claim
    assert "UPDATE inbound_events SET status = $1, processed_at = now()" in sql  # done
