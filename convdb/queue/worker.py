"""``convdb queue-worker``: claim batches, dispatch, record, retry, shut down cleanly.

::

    from convdb.queue.worker import WorkerConfig, run
    run(url, config=WorkerConfig(burst=True), handlers={"my.event": handle})

Each worker thread (``concurrency`` of them, each with its own connection):

1. claims up to ``batch_size`` due events, and at most about ``batch_bytes``
   of payloads, in one short committed statement (``FOR UPDATE SKIP
   LOCKED``; the attempt is counted and a lease of ``lease_seconds`` taken);
2. decodes each payload on its own and checks it against the limits
   (:mod:`convdb.queue.limits`): one that cannot be decoded, or breaks a
   limit, goes ``dead`` alone;
3. processes the batch in ONE transaction, optimistically first: it marks
   the rows still under its lease ``done`` (which locks them), runs the
   handlers (a batch handler gets all of its events in one call) and
   commits, so the handlers' writes and the events' status commit together.
   If anything fails (any exception: ``RecursionError`` and ``MemoryError``
   included), the transaction is rolled back and the batch is split: around
   the event whose handler raised (the events before it, the event alone,
   the events after it), or in halves when the culprit is unknown (a batch
   handler raised). Each part is processed the same way; an event alone
   runs in a savepoint and is classified (:func:`~convdb.pgerrors.is_transient`):
   ``dead`` at once when permanent, ``pending`` again with exponential
   backoff and jitter when transient (``dead`` after the last attempt). A
   deadlock or serialization failure is retried at once, up to twice.
   Effects in the database happen exactly once; a handler may be called
   again for an event whose batch was rolled back;
4. when idle, waits on ``LISTEN`` (woken by ``enqueue``'s ``NOTIFY``), polling
   every ``poll_interval`` seconds and at the next scheduled retry anyway.

A worker that dies (SIGKILL, out of memory, a crash in a C extension) leaves
its batch ``processing`` under a lease that expires: the claim then takes
those events again in groups half the size, with their attempt given back,
down to one event at a time; only an event that kills its worker while held
alone uses up its attempts, and goes ``dead`` saying so (see ``CLAIM`` in
:mod:`convdb.queue.queries`). No payload ever makes the worker process exit.
SIGTERM/SIGINT: stop claiming, finish the event in hand, commit, release the
rest of the batch to ``pending``, exit 0; a second signal exits at once (the
lease covers what was in hand). A database that does not answer cannot hold
the exit back: after ``shutdown_grace`` seconds the calls still waiting are
aborted, and the log says so. A lost connection is reopened; the batch it
interrupted is released.

Connections: ``target_session_attrs=read-write`` (with several hosts the
worker finds the primary, and the new one after a failover; while every
host is a standby it waits, saying why), TCP keepalives and a user timeout
(:mod:`convdb.pgconnect`), and a deadline on every call (:mod:`convdb.watchdog`):
one the server does not answer within twice the lease is cancelled and its
connection dropped; the session also ends itself when it idles in a
transaction that long.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

from .. import plugins
from ..config import load_settings
from ..db import ConvdbDatabase, init, open_database, resolve_url
from ..exceptions import DatabaseError, QueueError
from ..pgconnect import no_writable_host
from ..pgerrors import is_connection_error
from ..plugins import BatchHandler, Handler
from ..watchdog import Watchdog
from . import limits as limits_mod
from .acceptance import Acceptance
from .dispatch import Counters, Dispatcher, Echo
from .limits import BATCH_BYTES, Limits
from .manager import QueueManager, describe

PROGRESS_DEADLINE = 3.0  # seconds the progress line waits for the queue depth


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class WorkerConfig:
    batch_size: int = 1000  # per claim and transaction; see docs/queue.md for the trade-off
    batch_bytes: int = BATCH_BYTES  # payload bytes per claim (the first event always fits)
    lease_seconds: float = 60.0
    max_attempts: int = 5
    backoff_base: float = 2.0  # seconds before the first retry; doubles each attempt
    backoff_max: float = 3600.0
    poll_interval: float = 2.0
    concurrency: int = 1
    burst: bool = False
    progress_interval: float = 5.0  # 0: no progress line
    reconnect_give_up: float = 60.0  # burst mode: seconds without a database before failing
    shutdown_grace: float = 20.0  # after SIGTERM, seconds to wait for the database's answers
    limits: Limits | None = None  # None: the settings' (convdb.queue.limits.configured())
    # seconds between runs of convdb.privacy.maintain (retention, done-event purge); 0:
    # never; None: CONVDB_RETENTION_INTERVAL. Never in burst mode.
    maintenance_interval: float | None = None

    def backoff(self, attempts: int) -> float:
        """Exponential backoff with "equal jitter": between half and all of the step."""
        step = min(self.backoff_max, self.backoff_base * 2 ** max(attempts - 1, 0))
        return step / 2 + random.uniform(0, step / 2)


class Worker:
    """A queue worker process: ``concurrency`` threads sharing one database object."""

    def __init__(
        self,
        db: ConvdbDatabase,
        *,
        handlers: Mapping[str, Handler] | None = None,
        batch_handlers: Mapping[str, BatchHandler] | None = None,
        config: WorkerConfig | None = None,
        echo: Echo = _stderr,
    ) -> None:
        self.db = db
        if handlers is None:
            handlers = plugins.load_handlers()
            if batch_handlers is None:
                batch_handlers = plugins.load_batch_handlers()
        self.handlers = _callables(handlers, "handler")
        self.batch_handlers = _callables(batch_handlers or {}, "batch handler")
        self.config = config or WorkerConfig()
        self.limits = self.config.limits or limits_mod.configured()
        self.echo = echo
        self.watchdog = Watchdog("convdb queue-worker", getattr(db, "url", None), on_abort=echo)
        if isinstance(db, ConvdbDatabase):
            deadline = 2 * self.config.lease_seconds
            db.watchdog, db.call_deadline = self.watchdog, deadline
            db.session["idle_in_transaction_session_timeout"] = str(int(deadline * 1000))
        self.counters = Counters()
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self._stopping = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self._errors: list[BaseException] = []
        self.dispatcher = Dispatcher(
            db,
            handlers=self.handlers,
            batch_handlers=self.batch_handlers,
            max_attempts=self.config.max_attempts,
            backoff=self.config.backoff,
            limits=self.limits,
            counters=self.counters,
            acceptance=Acceptance.of_handlers(self.handlers, limits=self.limits),
            echo=echo,
            stopping=self._stopping,
        )

    # --- control ---------------------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming; threads finish the event in hand and release the rest."""
        if not self._stopping.is_set():
            self._stopping.set()
            os.write(self._wake_w, b"x")  # wakes every thread waiting on LISTEN

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def _on_signal(self, signum, frame) -> None:
        if self.stopping:
            os._exit(128 + signum)
        # Stopping first: a second signal that comes while this one is still being
        # told (the message below) must find the worker stopping and exit at once.
        self.stop()
        self.echo(
            f"convdb queue-worker: {signal.Signals(signum).name} received, finishing the events "
            "in hand (send it again to exit at once)"
        )

    def run(self) -> Counters:
        """Run until stopped (or, in burst mode, until nothing is due); the counters."""
        in_main = threading.current_thread() is threading.main_thread()
        previous = {}
        if in_main:
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, self._on_signal)
        threads = [
            # Daemon threads: one the database never lets go cannot keep the process alive.
            threading.Thread(
                target=self._thread_main, args=(n,), name=f"convdb-worker-{n}", daemon=True
            )
            for n in range(max(self.config.concurrency, 1))
        ]
        interval = self.config.maintenance_interval
        if interval is None:
            interval = load_settings().retention_interval
        if interval > 0 and not self.config.burst:
            threading.Thread(
                target=self._maintain, args=(interval,), name="convdb-maintenance", daemon=True
            ).start()
        started = time.monotonic()
        try:
            for thread in threads:
                thread.start()
            self._supervise(threads)
        finally:
            self.stop()
            grace = time.monotonic() + self.config.shutdown_grace
            for thread in threads:
                self.watchdog.join(thread, max(grace - time.monotonic(), 0.1), self.echo)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            os.close(self._wake_r)
            os.close(self._wake_w)
        if self.config.progress_interval and not self._errors:
            c = self.counters
            elapsed = max(time.monotonic() - started, 1e-9)
            self.echo(self._progress((c.done + c.dead + c.retried) / elapsed, final=True))
        if self._errors:
            error = self._errors[0]
            if isinstance(error, QueueError):
                raise error
            raise QueueError(f"queue worker failed: {describe(error)}") from error
        return self.counters

    def _supervise(self, threads: list[threading.Thread]) -> None:
        interval = self.config.progress_interval
        last_at = time.monotonic()
        last_total = 0
        while not self.stopping and any(t.is_alive() for t in threads):
            next(t for t in threads if t.is_alive()).join(0.2)
            if not interval or time.monotonic() - last_at < interval:
                continue
            now, c = time.monotonic(), self.counters
            total = c.done + c.dead + c.retried
            rate = (total - last_total) / (now - last_at)
            last_total, last_at = total, now
            self.echo(self._progress(rate))

    def _progress(self, rate: float, final: bool = False) -> str:
        c = self.counters
        try:
            # The main thread takes the signals: it never waits long on the database.
            manager = QueueManager(self.db)
            manager.connect()
            with self.watchdog.guard(self.db.connection(), PROGRESS_DEADLINE, "the queue depth"):
                depth = str(manager.depth())
        except QueueError:
            depth = "?"
        finally:
            self.db.close()
        label = "finished" if final else "progress"
        return (
            f"convdb queue-worker {label}: {rate:.1f} events/s, done {c.done}, "
            f"retried {c.retried}, dead {c.dead}, queue depth {depth}"
        )

    # --- the schedule ----------------------------------------------------------------

    def _maintain(self, interval: float) -> None:
        """Every ``interval`` seconds, retention and the done-event purge
        (:func:`convdb.privacy.maintain`), by one worker process at a time (an
        advisory lock); a failure is reported and tried again next time."""
        from ..privacy import maintain

        while not self.stopping:
            try:
                locked = self.db.execute_sql(
                    "SELECT pg_try_advisory_lock(hashtext('convdb.maintenance'))"
                ).fetchone()[0]
                if locked:
                    try:
                        done = maintain(self.db)
                        if done["events_purged"] or any(done["retention"].values()):
                            self.echo(
                                f"convdb queue-worker: maintenance: purged "
                                f"{done['events_purged']} done event(s); retention "
                                f"{ {k: sum(v.values()) for k, v in done['retention'].items()} }"
                            )
                    finally:
                        self.db.execute_sql(
                            "SELECT pg_advisory_unlock(hashtext('convdb.maintenance'))"
                        )
            except Exception as exc:  # the next round tries again
                self.echo(f"convdb queue-worker: maintenance failed: {describe(exc)}")
                self.db.close()
            self._stopping.wait(interval)
        self.db.close()

    # --- one thread ------------------------------------------------------------------

    def _thread_main(self, n: int) -> None:
        manager = QueueManager(self.db)
        worker_id = f"{self.name}:{n}"
        try:
            self._loop(manager, worker_id)
        except BaseException as exc:
            self._errors.append(exc)
            self.stop()
        finally:
            manager.reset_connection()

    def _loop(self, manager: QueueManager, worker_id: str) -> None:
        cfg = self.config
        failing_since = None
        while not self.stopping:
            try:
                manager.connect()
                if not cfg.burst:
                    manager.listen()
                events, abandoned = manager.claim(
                    worker_id,
                    cfg.batch_size,
                    cfg.lease_seconds,
                    cfg.max_attempts,
                    max_bytes=cfg.batch_bytes,
                    max_payload_bytes=self.limits.payload_bytes,
                )
                if not events and not cfg.burst:
                    due_in = manager.next_due()
                    timeout = (
                        cfg.poll_interval if due_in is None else min(cfg.poll_interval, due_in)
                    )
                    manager.wait(max(timeout, 0.01), self._wake_r)
                failing_since = None
            except QueueError as exc:
                if not is_connection_error(exc):
                    raise
                failing_since = failing_since or time.monotonic()
                if cfg.burst and time.monotonic() - failing_since > cfg.reconnect_give_up:
                    raise
                self.echo(f"convdb queue-worker: {exc}; reconnecting")
                manager.reset_connection()
                self._sleep(min(5.0, 0.5 + time.monotonic() - failing_since))
                continue
            if abandoned:
                self.counters.add(dead=abandoned)
            if events:
                self.dispatcher.process(manager, worker_id, events)
            elif cfg.burst:
                return

    def _sleep(self, seconds: float) -> None:
        self._stopping.wait(seconds)


def _callables(mapping: Mapping[str, object], what: str) -> dict:
    for event_type, handler in mapping.items():
        if not callable(handler):
            raise TypeError(f"{what} for {event_type!r} is not callable: {handler!r}")
    return dict(mapping)


def run(
    url: str | None = None,
    *,
    config: WorkerConfig | None = None,
    handlers: Mapping[str, Handler] | None = None,
    batch_handlers: Mapping[str, BatchHandler] | None = None,
    echo: Echo = _stderr,
) -> Counters:
    """Run a worker on the database at ``url`` (default: DATABASE_URL, .env, embedded).

    ``handlers`` (and ``batch_handlers``) default to every installed plugin's
    (:func:`convdb.plugins.load_handlers`); given ``handlers`` without
    ``batch_handlers``, every event goes through its one-event handler.
    Binds the models to it (handlers use them), runs until stopped or, with
    ``config.burst``, until nothing is due, and returns the counters. Checks
    every setting first: a bad one raises ConfigError before any event is claimed.
    """
    settings = load_settings()
    url = url or resolve_url(settings)
    config = config or WorkerConfig()
    try:
        db = open_database(url)
        db.close()
    except DatabaseError as exc:
        if config.burst or not no_writable_host(exc):
            raise
        # A failover under way: wait for a primary, as after a lost connection.
        echo(f"convdb queue-worker: {exc.message}; waiting for a host to be promoted")
        db = ConvdbDatabase(url)
    init(db)
    worker = Worker(db, handlers=handlers, batch_handlers=batch_handlers, config=config, echo=echo)
    return worker.run()
