"""``python -m bench.peers --smoke``: every drain of the peer comparison runs, drains
its whole backlog, and the ratios are the quotients of the same run's figures."""

import json
import os
import subprocess
import sys
from pathlib import Path

from bench import peers
from convdb.testing import query

REPO = Path(__file__).resolve().parents[2]


def test_the_smoke_run_measures_every_drain_and_cleans_up(server, tmp_path):
    out = tmp_path / "peers.json"
    env = {**os.environ, "DATABASE_URL": server.admin_url}
    result = subprocess.run(
        [sys.executable, "-m", "bench.peers", "--smoke", "--no-pgqueuer", "--json", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = json.loads(out.read_text())
    rate = {name: values[0] for name, values in runs.items()}
    drains = [name for name in rate if name.startswith("drain 300,")]
    assert any("plain psycopg2 loop" in n and "1 process" in n for n in drains)
    assert any("no-op handler, k = 1,000 (convdb's default), 2 process" in n for n in drains)
    if peers.find_pgbench():
        assert any("pgbench" in n for n in drains)
    assert all(rate[n] > 0 for n in drains)
    ratio = rate["enqueue, convdb / plain SQL"]
    convdb = rate["enqueue, convdb enqueue_many, batches of 1,000 (events/s)"]
    plain = rate["enqueue, plain SQL unnest, batches of 1,000 (events/s)"]
    assert abs(ratio - convdb / plain) < 1e-9
    assert "mixed backlog, canonical / no-op, 1 process" in rate
    assert "convdb / plain loop, k = 100, 2 process(es)" in result.stdout
    left = query(
        server.admin_url,
        "SELECT datname FROM pg_database WHERE datname LIKE %s",
        ("convdb_bench_peers%",),
    )
    assert left == []


def test_the_pgbench_script_runs_convdbs_statements_per_client(db_url):
    script = peers.pgbench_script(db_url, 100)
    assert "--" not in script  # comments would hide colons from pgbench
    assert script.count("('pgbench:' || :client_id)") >= 2  # claim and complete
    assert "':ids'::bigint[]" in script
    assert "FOR UPDATE SKIP LOCKED" in script and "\\gset" in script
    assert "LIMIT 100" in script
