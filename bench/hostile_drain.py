"""What hostile events cost the queue: drain rate with a few bad events, memory with big ones.

::

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python -m bench.hostile_drain [--case bad|big] [--runs 3] \\
        [--bin OTHER/.venv/bin ...]

``--case bad`` (the default): a backlog of ``--events`` canonical events (the
``spread`` mix of :mod:`bench.events`: each opens its conversation) of which
``--bad`` can never be ingested, spread evenly: half with a ``sent_at``
whose offset takes it out of range, half with addresses long enough to
overflow the thread-key index. One ``convdb queue-worker --burst -q`` drains
it; the rate is the backlog over the wall time of that run (start-up
included), with the statuses it left.

``--case big``: ``--big`` events of ``--big-mb`` MB each (a canonical
payload with a body that size) enqueued with ``convdb enqueue`` from a file,
then drained with ``convdb queue-worker --burst -q``; prints the peak RSS of
each process (GNU ``/usr/bin/time`` measures it). Settings such as
``CONVDB_MAX_PAYLOAD_BYTES`` come from the environment.

Each ``--bin`` (a folder holding a ``convdb`` console script, default this
environment's) gets its own migrated template; runs alternate between them
(A B A B ...) so a drifting machine moves both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg2

from . import events
from .drain_quick import admin
from .runner import database_url as db_url

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parent.parent


def execute(url: str, sql: str, params=None) -> list[tuple]:
    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def long_address(rng: random.Random, domain: str) -> str:
    """About 300 characters that survive normalization, escape to ~1,400 bytes of JSON
    and compress too little for PostgreSQL to shrink them in an index."""
    chars = [chr(rng.randint(0x20000, 0x3FFFF)) for _ in range(200)]
    chars += [chr(rng.randint(1, 31)) for _ in range(105)]
    rng.shuffle(chars)
    return "x" + "".join(chars) + "@" + domain


def make_bad(url: str, n: int, bad: int) -> None:
    rng = random.Random(7)
    ids = [r[0] for r in execute(url, "SELECT id FROM inbound_events ORDER BY id")]
    step = max(len(ids) // max(bad, 1), 1)
    for k, event_id in enumerate(ids[step // 2 :: step][:bad]):
        if k % 2 == 0:
            sql = (
                "UPDATE inbound_events SET payload = jsonb_set(payload, '{sent_at}', "
                "'\"0001-01-01T00:00:00+02:00\"') WHERE id = %s"
            )
            execute(url, sql, (event_id,))
        else:
            change = {
                "provider": {"kind": "email", "name": "bench-mail"},
                "from": {"address": long_address(rng, "contact.example")},
                "to": [{"address": long_address(rng, "customer.example")}],
            }
            sql = (
                "UPDATE inbound_events SET payload = (payload - 'conversation_key') || %s::jsonb "
                "WHERE id = %s"
            )
            execute(url, sql, (json.dumps(change, ensure_ascii=False), event_id))


def statuses(url: str) -> dict[str, int]:
    return dict(execute(url, "SELECT status, count(*) FROM inbound_events GROUP BY 1"))


def drain_bad(base: str, template: str, bin_dir: Path, n: int, bad: int) -> tuple[float, dict]:
    name = f"convdb_hostile_{os.getpid()}"
    admin(base, f"DROP DATABASE IF EXISTS {name}")
    admin(base, f"CREATE DATABASE {name} TEMPLATE {template}")
    url = db_url(base, name)
    try:
        events.insert(url, 1, n, tag=f"h{time.time_ns()}", mix="spread")
        make_bad(url, n, bad)
        admin(url, "VACUUM ANALYZE")
        env = {**os.environ, "DATABASE_URL": url}
        started = time.perf_counter()
        cmd = [str(bin_dir / "convdb"), "queue-worker", "--burst", "-q"]
        subprocess.run(cmd, env=env, cwd=REPO, check=False, capture_output=True)
        seconds = time.perf_counter() - started
        return n / seconds, statuses(url)
    finally:
        admin(base, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def peak_rss_mb(cmd: list[str], env: dict, stdin=None) -> tuple[float, int, str]:
    """Run ``cmd``; (its peak RSS in MB, exit status, the end of its stderr).

    Measured by GNU time (``/usr/bin/time``) around the command: a child
    forked straight from this process would count this process's own peak
    (Linux carries it over into the child's ``ru_maxrss`` at exec).
    """
    with tempfile.TemporaryFile() as err, tempfile.NamedTemporaryFile("r") as peak:
        proc = subprocess.run(
            ["/usr/bin/time", "-o", peak.name, "-f", "%M", *cmd],
            env=env,
            cwd=REPO,
            stdin=stdin,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        err.seek(0)
        tail = err.read().decode("utf-8", "replace").strip().splitlines()[-1:]
        kilobytes = int(peak.read().split()[-1])
    return kilobytes / 1024, proc.returncode, " ".join(tail)


def drain_big(base: str, template: str, bin_dir: Path, count: int, mb: float) -> dict:
    name = f"convdb_hostile_big_{os.getpid()}"
    admin(base, f"DROP DATABASE IF EXISTS {name}")
    admin(base, f"CREATE DATABASE {name} TEMPLATE {template}")
    url = db_url(base, name)
    rng = random.Random(3)
    try:
        with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
            for i in range(count):
                payload = events.payload(i, tag="big")
                words = (f"w{rng.randrange(10**9)}" for _ in range(int(mb * 1_000_000 / 11)))
                payload["body"] = " ".join(words)
                f.write(json.dumps(payload) + "\n")
        env = {**os.environ, "DATABASE_URL": url}
        with open(f.name, "rb") as stream:
            enqueue = peak_rss_mb(
                [str(bin_dir / "convdb"), "enqueue", "message.received", "-"], env, stream
            )
        worker = peak_rss_mb([str(bin_dir / "convdb"), "queue-worker", "--burst", "-q"], env)
        return {"enqueue": enqueue, "worker": worker, "statuses": statuses(url)}
    finally:
        os.unlink(f.name)
        admin(base, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--case", choices=("bad", "big"), default="bad")
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--bad", type=int, default=10)
    parser.add_argument("--big", type=int, default=20, help="big events (--case big)")
    parser.add_argument("--big-mb", type=float, default=5.0, help="MB per big event")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--bin", action="append", type=Path, help="folder with convdb")
    args = parser.parse_args()
    bins = [b.resolve() for b in (args.bin or [BIN])]
    base = os.environ["DATABASE_URL"]
    templates = {}
    try:
        for i, bin_dir in enumerate(bins):
            templates[bin_dir] = template = f"convdb_hostile_tmpl_{os.getpid()}_{i}"
            admin(base, f"DROP DATABASE IF EXISTS {template}")
            admin(base, f"CREATE DATABASE {template}")
            env = {**os.environ, "DATABASE_URL": db_url(base, template)}
            cmd = [str(bin_dir / "convdb"), "migrate"]
            subprocess.run(cmd, env=env, cwd=REPO, check=True, capture_output=True)
        rates: dict[Path, list[float]] = {b: [] for b in bins}
        for run in range(args.runs):
            for bin_dir in bins:
                if args.case == "bad":
                    rate, left = drain_bad(base, templates[bin_dir], bin_dir, args.events, args.bad)
                    rates[bin_dir].append(rate)
                    print(f"run {run + 1} {bin_dir}: {rate:,.0f} events/s; {left}", flush=True)
                else:
                    found = drain_big(base, templates[bin_dir], bin_dir, args.big, args.big_mb)
                    print(f"run {run + 1} {bin_dir}: {found}", flush=True)
        if args.case == "bad":
            for bin_dir, values in rates.items():
                print(
                    f"{bin_dir}: {args.bad} bad in {args.events}: median "
                    f"{statistics.median(values):,.0f} events/s "
                    f"(min {min(values):,.0f}, max {max(values):,.0f}, {len(values)} runs)"
                )
    finally:
        for template in templates.values():
            admin(base, f"DROP DATABASE IF EXISTS {template} WITH (FORCE)")


if __name__ == "__main__":
    main()
