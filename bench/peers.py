"""``python -m bench.peers``: convdb's queue against its peers, draining the same backlog.

::

    make bench-peers                       # installs pgqueuer first, then runs this
    DATABASE_URL=postgresql://... .venv/bin/python -m bench.peers [--events 20000] [--runs 3]
    .venv/bin/python -m bench.peers --smoke   # tiny sizes, one run (tests/processes)

Durable commits (the server's ``synchronous_commit``), one fresh backlog of
``--events`` jobs per run, the median of ``--runs`` runs; every run measures
every row, one after the other, so the ratios compare figures of one run
(on a loaded machine the absolute numbers move; the ratios much less).
Drains (jobs/s, 1 and 2 processes):

- ``pgqueuer``: the published package (``make bench-peers`` installs it into
  the virtualenv; it is no dependency of convdb), batch ``--batch``, a no-op
  entrypoint, ``QueueExecutionMode.drain``;
- ``plain``: a psycopg2 loop running convdb's own claim and complete SQL
  (:data:`convdb.queue.queries.CLAIM`, then ``CLAIM_DONE`` in a transaction,
  as the worker's fast path does), ``k = --batch``;
- ``convdb``: ``convdb.queue.worker.run`` (what ``convdb queue-worker`` runs)
  with a no-op handler, at the worker's default batch and at ``k = --batch``;
- ``pgbench``: the same claim and complete statements driven by pgbench
  (the PostgreSQL server's own client; found like tests/pgcluster.py finds
  the server binaries), ``--pgbench-clients`` clients: the SQL's ceiling on
  this server;
- ``canonical``: ``convdb queue-worker --burst`` on the bench's mixed backlog
  (one event in ten opens a conversation, :mod:`bench.events`), against the
  no-op worker on the same backlog.

Every drain process starts blocked on a lock of the queue table and the clock
starts when it is released (see :mod:`bench.queue_bench`), so start-up is not
timed. Enqueue: ``enqueue_many`` in batches of 1,000 against plain SQL (the
same dicts encoded with the same JSON encoder, ``INSERT ... SELECT FROM
unnest``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import psycopg2

from convdb import migrate as migrate_lib
from convdb.cli.render import format_table
from convdb.queue import queries
from convdb.queue.limits import BATCH_BYTES, Limits
from convdb.queue.worker import WorkerConfig

from . import events, queue_bench
from .report import Figure, say

PGQUEUER_TABLE = "pgqueuer"
PGQUEUER_ENTRYPOINT = "bench"

# The workers each run in a process of their own, started before the clock.
PLAIN_WORKER = """
import os, sys
import psycopg2
from bench.peers import claim_params
from convdb.queue import queries
url, batch = sys.argv[1], int(sys.argv[2])
worker = f"plain:{os.getpid()}"
conn = psycopg2.connect(url)
conn.autocommit = True
cur = conn.cursor()
params = claim_params(worker, batch)
while True:
    cur.execute(queries.CLAIM, params)
    rows = cur.fetchall()
    if not rows:
        break
    ids = [r[0] for r in rows if r[7] == "processing"]
    cur.execute("BEGIN")
    cur.execute(queries.CLAIM_DONE, {"ids": ids, "worker": worker})
    cur.fetchall()
    cur.execute("COMMIT")
conn.close()
"""

NOOP_WORKER = """
import sys
from convdb.queue import worker
config = worker.WorkerConfig(burst=True, progress_interval=0, batch_size=int(sys.argv[2]))
worker.run(sys.argv[1], config=config, handlers={"message.received": lambda event: None})
"""

PGQUEUER_WORKER = """
import asyncio, sys
from datetime import timedelta
import asyncpg
from pgqueuer import AsyncpgDriver, Queries, QueueManager
from pgqueuer.types import QueueExecutionMode

async def main(url, batch):
    conn = await asyncpg.connect(url)
    qm = QueueManager(Queries(AsyncpgDriver(conn)))

    @qm.entrypoint("bench")
    async def job(job):
        pass

    await qm.run(
        batch_size=batch,
        mode=QueueExecutionMode.drain,
        dequeue_timeout=timedelta(seconds=1),
        log_aggregation_interval=timedelta(0),
    )
    await conn.close()

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


def claim_params(worker: str, batch: int) -> dict:
    """The parameters convdb's worker passes to ``CLAIM`` (its defaults)."""
    config = WorkerConfig()
    return {
        "limit": batch,
        "worker": worker,
        "lease": config.lease_seconds,
        "max_attempts": config.max_attempts,
        "max_bytes": BATCH_BYTES,
        "max_payload_bytes": Limits.payload_bytes,
    }


# --- the backlog -------------------------------------------------------------------------


def _execute(url: str, *statements: str) -> None:
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for sql in statements:
                cur.execute(sql)
    finally:
        conn.close()


def fresh_backlog(url: str, count: int, tag: str) -> None:
    """Exactly ``count`` pending events (``spread`` mix), nothing else in the queue."""
    _execute(url, "TRUNCATE inbound_events")
    events.insert(url, 1, count, tag=tag)
    _execute(url, "VACUUM ANALYZE inbound_events")


def _python(code: str, url: str, batch: int) -> list[str]:
    return [sys.executable, "-c", code, url, str(batch)]


def drain_inbound(url: str, count: int, processes: int, command: list[str], tag: str) -> float:
    fresh_backlog(url, count, tag)
    result = queue_bench.drain(url, processes=processes, noop=True, expected=count, command=command)
    return result.rate


# --- pgqueuer --------------------------------------------------------------------------------


def pgqueuer_available() -> bool:
    try:
        import asyncpg  # noqa: F401
        import pgqueuer  # noqa: F401
    except ImportError:
        return False
    return True


def _pgqueuer_remaining(url: str) -> int:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM {PGQUEUER_TABLE}")
            return cur.fetchone()[0]
    finally:
        conn.close()


async def _pgqueuer_setup(url: str, count: int, payload: bytes) -> None:
    import asyncpg
    from pgqueuer import AsyncpgDriver, Queries

    conn = await asyncpg.connect(url)
    try:
        q = Queries(AsyncpgDriver(conn))
        if not await q.has_table(PGQUEUER_TABLE):
            await q.install()
        await conn.execute(f"TRUNCATE {PGQUEUER_TABLE}, {PGQUEUER_TABLE}_log")
        for start in range(0, count, 1000):
            n = min(1000, count - start)
            await q.enqueue([PGQUEUER_ENTRYPOINT] * n, [payload] * n, [0] * n)
        await conn.execute(f"VACUUM ANALYZE {PGQUEUER_TABLE}")
    finally:
        await conn.close()


def drain_pgqueuer(url: str, count: int, processes: int, batch: int) -> float:
    payload = json.dumps(events.payload(0), ensure_ascii=False).encode()
    asyncio.run(_pgqueuer_setup(url, count, payload))
    result = queue_bench.drain(
        url,
        processes=processes,
        noop=True,
        expected=count,
        command=_python(PGQUEUER_WORKER, url, batch),
        table=PGQUEUER_TABLE,
        done=lambda u: -_pgqueuer_remaining(u),
    )
    return result.rate


# --- pgbench ---------------------------------------------------------------------------------


def find_pgbench() -> str | None:
    """pgbench on PATH, else beside the server binaries the tests use."""
    found = shutil.which("pgbench")
    if found:
        return found
    try:
        from tests.pgcluster import find_bindir

        candidate = find_bindir(install=False) / "pgbench"
    except Exception:
        return None
    return str(candidate) if candidate.exists() else None


WORKER_TOKEN = "pgbench-worker-token"
IDS_TOKEN = "pgbench-ids-token"


def pgbench_script(url: str, batch: int) -> str:
    """convdb's CLAIM, then CLAIM_DONE in a transaction, as a pgbench script.

    The claim's ids reach the complete through ``\\gset`` (an array in one
    row); each client is its own worker (``:client_id``).
    """
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            claim = cur.mogrify(queries.CLAIM, claim_params(WORKER_TOKEN, batch)).decode()
            done = cur.mogrify(
                queries.CLAIM_DONE, {"ids": IDS_TOKEN, "worker": WORKER_TOKEN}
            ).decode()
    finally:
        conn.close()

    def prepare(sql: str) -> str:
        sql = re.sub(r"--[^\n]*", "", sql)  # comments: pgbench would read their colons
        sql = sql.replace(f"'{WORKER_TOKEN}'", "('pgbench:' || :client_id)")
        sql = sql.replace(f"'{IDS_TOKEN}'", "':ids'")
        return "\n".join(line for line in sql.splitlines() if line.strip())

    return (
        f"WITH claimed AS (\n{prepare(claim)}\n)\n"
        "SELECT coalesce(array_agg(id) FILTER (WHERE status = 'processing'), '{}') AS ids,\n"
        "       coalesce(sum(length(payload)), 0) AS payload_chars\n"
        "  FROM claimed\n"
        "\\gset\n"
        "BEGIN;\n"
        f"{prepare(done)};\n"
        "COMMIT;\n"
    )


def drain_pgbench(url: str, count: int, clients: int, batch: int, pgbench: str) -> float:
    fresh_backlog(url, count, "pgbench")
    per_client = math.ceil(count / batch / clients) + 2  # the tail claims fewer
    with tempfile.TemporaryDirectory(prefix="convdb-peers-") as folder:
        script = Path(folder) / "claim_complete.sql"
        script.write_text(pgbench_script(url, batch))
        command = [
            pgbench,
            "-n",
            "-M",
            "simple",
            "-c",
            str(clients),
            "-j",
            str(clients),
            "-t",
            str(per_client),
            "-f",
            str(script),
            url,
        ]
        result = queue_bench.drain(url, processes=1, noop=True, expected=count, command=command)
    return result.rate


# --- enqueue -------------------------------------------------------------------------------


PLAIN_INSERT = """
INSERT INTO inbound_events (event_type, payload)
SELECT 'message.received', p::jsonb FROM unnest(%s::text[]) AS u(p)
"""


def enqueue_plain(url: str, count: int, batch: int = 1000) -> float:
    """Events/s: the same dicts as ``enqueue_batch``, ``json.dumps`` as convdb encodes
    them, one ``INSERT ... SELECT FROM unnest`` per batch (autocommit)."""
    tag = f"plain-{time.time_ns()}"
    payloads = [events.payload(i, tag=tag) for i in range(count)]
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            started = time.perf_counter()
            for start in range(0, count, batch):
                texts = [
                    json.dumps(p, ensure_ascii=False, allow_nan=False)
                    for p in payloads[start : start + batch]
                ]
                cur.execute(PLAIN_INSERT, (texts,))
            return count / (time.perf_counter() - started)
    finally:
        conn.close()


# --- the run -------------------------------------------------------------------------------


def ratios(name: str, top: Figure, bottom: Figure) -> Figure:
    return Figure(
        name,
        "x",
        runs=[a / b for a, b in zip(top.runs, bottom.runs, strict=True)],
        info=True,
    )


def run(url: str, args) -> list[Figure]:
    """Every row, run after run; then the same-run ratios."""
    n, batch = args.events, args.batch
    default_batch = WorkerConfig().batch_size
    sizes = sorted({batch, default_batch})
    rate = "jobs/s"

    def k_text(k: int) -> str:
        return f"k = {k:,}" + (" (convdb's default)" if k == default_batch else "")

    drains = []  # (key, label, function)
    if args.pgqueuer:
        for p in (1, 2):
            drains.append(
                (
                    f"pgqueuer{p}",
                    f"pgqueuer {args.pgqueuer_version}, batch {batch}, {p} process(es)",
                    lambda p=p: drain_pgqueuer(url, n, p, batch),
                )
            )
    for k in sizes:
        for p in (1, 2):
            drains.append(
                (
                    f"plain{k}-{p}",
                    f"plain psycopg2 loop, convdb's SQL, {k_text(k)}, {p} process(es)",
                    lambda p=p, k=k: drain_inbound(
                        url, n, p, _python(PLAIN_WORKER, url, k), "plain"
                    ),
                )
            )
        for p in (1, 2):
            drains.append(
                (
                    f"convdb{k}-{p}",
                    f"convdb queue-worker, no-op handler, {k_text(k)}, {p} process(es)",
                    lambda p=p, k=k: drain_inbound(url, n, p, _python(NOOP_WORKER, url, k), "noop"),
                )
            )
        if args.pgbench:
            c = args.pgbench_clients
            drains.append(
                (
                    f"pgbench{k}",
                    f"pgbench, convdb's SQL, {k_text(k)}, {c} clients",
                    lambda k=k, c=c: drain_pgbench(url, n, c, k, args.pgbench),
                )
            )
    rows = {
        key: Figure(f"drain {n:,}, {label} ({rate})", "/s", info=True) for key, label, _ in drains
    }
    rows["enqueue_convdb"] = Figure(
        "enqueue, convdb enqueue_many, batches of 1,000 (events/s)", "/s", info=True
    )
    rows["enqueue_plain"] = Figure(
        "enqueue, plain SQL unnest, batches of 1,000 (events/s)", "/s", info=True
    )
    canonical_url = args.canonical_url
    if canonical_url:
        rows["mixed_noop"] = Figure(
            f"drain {n:,} mixed, convdb no-op, 1 process ({rate})", "/s", info=True
        )
        rows["mixed_canonical"] = Figure(
            f"drain {n:,} mixed, convdb queue-worker (canonical), 1 process ({rate})",
            "/s",
            info=True,
        )
    for r in range(args.runs):
        for key, label, function in drains:
            value = function()
            rows[key].runs.append(value)
            say(f"peers run {r + 1}/{args.runs}: {label}: {value:,.0f} {rate}")
        rows["enqueue_convdb"].runs.append(queue_bench.enqueue_batch(url, args.enqueue))
        rows["enqueue_plain"].runs.append(enqueue_plain(url, args.enqueue))
        say(
            f"peers run {r + 1}/{args.runs}: enqueue convdb "
            f"{rows['enqueue_convdb'].runs[-1]:,.0f}/s, "
            f"plain {rows['enqueue_plain'].runs[-1]:,.0f}/s"
        )
        if canonical_url:
            for kind in ("noop", "canonical"):
                tag = f"peers-{kind}-{r}-{time.time_ns()}"
                queue_bench.prepare_backlog(canonical_url, n, n, tag=tag, warm=args.warm)
                result = queue_bench.drain(
                    canonical_url, processes=1, noop=kind == "noop", expected=n
                )
                rows[f"mixed_{kind}"].runs.append(result.rate)
                say(f"peers run {r + 1}/{args.runs}: mixed {kind}: {result.rate:,.0f} {rate}")
    figures = list(rows.values())
    for k in sizes:
        for p in (1, 2):
            figures.append(
                ratios(
                    f"convdb / plain loop, {k_text(k)}, {p} process(es)",
                    rows[f"convdb{k}-{p}"],
                    rows[f"plain{k}-{p}"],
                )
            )
        if args.pgbench:
            for who in ("convdb", "plain"):
                figures.append(
                    ratios(
                        f"{who}, 2 processes / pgbench, {k_text(k)}",
                        rows[f"{who}{k}-2"],
                        rows[f"pgbench{k}"],
                    )
                )
    default = f"convdb{default_batch}"
    if args.pgqueuer:
        for p in (1, 2):
            figures.append(
                ratios(
                    f"convdb (default batch) / pgqueuer (batch {batch}), {p} process(es)",
                    rows[f"{default}-{p}"],
                    rows[f"pgqueuer{p}"],
                )
            )
    figures.append(
        ratios("convdb, default batch, 2 processes / 1", rows[f"{default}-2"], rows[f"{default}-1"])
    )
    figures.append(
        ratios("enqueue, convdb / plain SQL", rows["enqueue_convdb"], rows["enqueue_plain"])
    )
    if canonical_url:
        figures.append(
            ratios(
                "mixed backlog, canonical / no-op, 1 process",
                rows["mixed_canonical"],
                rows["mixed_noop"],
            )
        )
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.peers", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--smoke", action="store_true", help="300 events, one run")
    parser.add_argument("--events", type=int, default=20_000, help="jobs per drain (20,000)")
    parser.add_argument("--runs", type=int, default=3, help="runs; medians are shown (3)")
    parser.add_argument("--batch", type=int, default=100, help="k of the peers (100)")
    parser.add_argument("--enqueue", type=int, default=20_000, help="events per enqueue figure")
    parser.add_argument("--pgbench-clients", type=int, default=2)
    parser.add_argument("--no-pgqueuer", action="store_true", help="skip pgqueuer's rows")
    parser.add_argument("--no-canonical", action="store_true", help="skip the mixed backlog")
    parser.add_argument("--json", type=Path, help="write the raw runs here")
    args = parser.parse_args(argv)
    if args.smoke:
        args.events, args.runs, args.enqueue = 300, 1, 1_000
    for name in ("events", "runs", "batch", "enqueue", "pgbench_clients"):
        value = getattr(args, name)
        if not 1 <= value <= 10_000_000:
            parser.error(
                f"--{name.replace('_', '-')} must be between 1 and 10,000,000, not {value}"
            )
    args.warm = 20 if args.smoke else events.WARM
    args.pgqueuer = not args.no_pgqueuer and pgqueuer_available()
    if not args.no_pgqueuer and not args.pgqueuer:
        say("peers: pgqueuer is not installed (make bench-peers installs it): its rows are skipped")
    if args.pgqueuer:
        from importlib.metadata import version

        args.pgqueuer_version = version("pgqueuer")
    args.pgbench = find_pgbench()
    if not args.pgbench:
        say("peers: pgbench not found (PostgreSQL's server binaries): its row is skipped")

    from .runner import _open_server

    server, data_dir = _open_server(args)
    try:
        version = server.execute("SHOW server_version")[0]
        sync = server.execute("SHOW synchronous_commit")[0]
        template = server.create("peers_template")
        migrate_lib.run(server.url(template), echo=lambda _: None)
        url = server.url(server.create("peers", template))
        args.canonical_url = None
        if not args.no_canonical:
            args.canonical_url = server.url(server.create("peers_mixed", template))
            say(f"peers: warm-up: {args.warm:,} conversations for the mixed backlog")
            queue_bench.warm_up(args.canonical_url, args.warm)
        figures = run(url, args)
    finally:
        server.drop_all()
        if data_dir is not None:
            from convdb import embedded

            embedded.stop(data_dir)
    print(
        f"PostgreSQL {version}, synchronous_commit={sync}, {os.cpu_count()} cores; "
        f"{args.events:,} jobs per drain, median of {args.runs} run(s) (min-max)"
    )
    print(format_table(["figure", "value: median (min-max)"], [f.row()[:2] for f in figures]))
    if args.json:
        args.json.write_text(
            json.dumps({f.name: f.runs for f in figures}, indent=1, ensure_ascii=False) + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
