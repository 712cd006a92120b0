"""The large-backlog drain comparison of ``make bench``, alone and quick.

::

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python -m bench.big_backlog [--runs 3]

The same sequence as the queue figures of ``make bench``, without the noop,
page and receiver figures: on one new database, the warm-up of the mixed
backlogs, ``--runs`` canonical drains of a 20,000-event backlog (mix
``mixed``), ``--runs`` drains of 20,000 events that each open a conversation
(mix ``fresh``), 1,000,000 done events, then ``--runs`` drains of the first
20,000 of a 200,000-event backlog. Prints the rates and how much slower each
large-backlog drain was than the small one of the same index.

To compare two versions of convdb, run this file from each checkout's root
with that checkout's Python (``cd OTHER && OTHER/.venv/bin/python
PATH/TO/bench/big_backlog.py``): it imports ``bench`` and ``convdb`` from the
working directory, and the bench helpers it uses have kept their names.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.getcwd())

from bench import queue_bench
from bench.runner import Server
from convdb import migrate as migrate_lib

WARM = 2_000
SMALL = 20_000
BIG = 200_000
DONE = 1_000_000


def drains(url: str, runs: int, backlog: int, mix: str, tag: str) -> list[float]:
    rates = []
    for n in range(runs):
        queue_bench.prepare_backlog(url, backlog, SMALL, tag=f"{tag}{n}", mix=mix, warm=WARM)
        rates.append(queue_bench.drain(url, processes=1, noop=False, expected=SMALL).rate)
    return rates


def show(name: str, rates: list[float]) -> None:
    runs = ", ".join(f"{r:,.0f}" for r in rates)
    print(f"{name}: median {statistics.median(rates):,.0f}/s ({runs})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    server = Server(os.environ["DATABASE_URL"])
    try:
        url = server.url(server.create("big_backlog"))
        migrate_lib.run(url, echo=lambda _: None)
        queue_bench.warm_up(url, WARM)
        small = drains(url, args.runs, SMALL, "mixed", "small")
        show(f"canonical, {SMALL:,} backlog, mixed", small)
        show(f"canonical, {SMALL:,} backlog, fresh", drains(url, args.runs, SMALL, "fresh", "f"))
        queue_bench.mark_done_rows(url, DONE)
        big = drains(url, args.runs, BIG, "mixed", "big")
        show(f"canonical, first {SMALL:,} of {BIG:,} + {DONE:,} done, mixed", big)
        change = [(b / a - 1) * 100 for a, b in zip(small, big, strict=True)]
        print(
            f"large vs small backlog: median {statistics.median(change):+.0f}% "
            f"({', '.join(f'{c:+.0f}%' for c in change)})"
        )
    finally:
        server.drop_all()


if __name__ == "__main__":
    main()
