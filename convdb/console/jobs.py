"""Bulk actions on dead events (retry or purge by filter), run in the background in batches.

A bulk action acts on what the operator confirmed: the dead events of the
filter (an event type, or all) whose id is at most the newest id shown on
the confirmation page, so an event that dies meanwhile is left alone. It
runs on a thread of the console, in transactions of :data:`BATCH` events
(:meth:`convdb.queue.QueueManager.retry_dead` and ``purge_dead``, the
queue's own statements), so no request waits for it and no transaction
holds many locks: 100,000 events are 20 short transactions. Its page shows
the progress. One bulk action runs at a time; jobs are kept in memory
(the last :data:`KEPT`).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from ..db import closing, connect
from ..queue import QueueManager
from ..queue.manager import describe

log = logging.getLogger("convdb.console")

ACTIONS = ("retry", "purge")
BATCH = 5000
KEPT = 50


@dataclass
class Job:
    id: int
    action: str
    event_type: str | None
    max_id: int
    expected: int
    done: int = 0
    state: str = "running"  # running, finished, failed
    error: str | None = None
    started: float = 0.0
    finished: float | None = None

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def percent(self) -> int:
        if not self.expected:
            return 100 if not self.running else 0
        return min(100, int(self.done * 100 / self.expected))


class Busy(Exception):
    """Another bulk action is still running."""


class Jobs:
    """The console's bulk actions, on the primary database at ``url``."""

    def __init__(self, url: str, batch: int = BATCH) -> None:
        self.url = url
        self.batch = batch
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._jobs: OrderedDict[int, Job] = OrderedDict()
        self._threads: list[threading.Thread] = []

    def start(self, action: str, event_type: str | None, max_id: int, expected: int) -> Job:
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}")
        with self._lock:
            if any(job.running for job in self._jobs.values()):
                raise Busy("another bulk action is running; wait for it to finish")
            job = Job(next(self._ids), action, event_type, max_id, expected, started=time.time())
            self._jobs[job.id] = job
            while len(self._jobs) > KEPT:
                self._jobs.popitem(last=False)
        thread = threading.Thread(
            target=self._run, args=(job,), name=f"convdb-console-job-{job.id}"
        )
        thread.daemon = True
        self._threads.append(thread)
        thread.start()
        log.info("job %d: %s dead events up to id %d started", job.id, action, max_id)
        return job

    def get(self, job_id: int) -> Job | None:
        return self._jobs.get(job_id)

    def _run(self, job: Job) -> None:
        try:
            with closing(connect(self.url, bind=False)) as db:
                manager = QueueManager(db)
                act = manager.retry_dead if job.action == "retry" else manager.purge_dead
                # Never more than confirmed (retried events may die again meanwhile).
                while job.done < job.expected:
                    limit = min(self.batch, job.expected - job.done)
                    count = act(job.event_type, max_id=job.max_id, limit=limit)
                    job.done += count
                    if count < limit:
                        break
            job.state = "finished"
        except Exception as exc:
            job.state, job.error = "failed", describe(exc)
            log.error("job %d failed: %s", job.id, job.error)
        job.finished = time.time()
        log.info("job %d: %s %d dead events, %s", job.id, job.action, job.done, job.state)

    def close(self, timeout: float = 30.0) -> None:
        """Wait for running jobs (each batch is short) before the process exits."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0))


__all__ = ["ACTIONS", "BATCH", "Busy", "Job", "Jobs"]
