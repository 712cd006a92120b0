"""``convdb queue-worker``: claim batches, dispatch, record, retry, shut down cleanly.

::

    from convdb.queue.worker import WorkerConfig, run
    run(url, config=WorkerConfig(burst=True), handlers={"my.event": handle})

Each worker thread (``concurrency`` of them, each with its own connection):

1. claims up to ``batch_size`` due events in one short committed statement
   (``FOR UPDATE SKIP LOCKED``; the attempt is counted and a lease of
   ``lease_seconds`` taken);
2. processes the batch in ONE transaction, optimistically first: it locks the
   rows still under its lease, runs the handlers (a batch handler gets all of
   its events in one call) and marks every success ``done`` in one statement,
   in the same commit as the handlers' writes. If anything fails, that
   transaction is rolled back and the batch is redone event by event, each
   handler inside its own savepoint. Success: the handler's writes stay and
   the event becomes ``done`` in the same commit. Failure: rollback to the
   savepoint (its neighbours are untouched) and the event becomes ``dead``
   (permanent failure, or the last attempt) or ``pending`` again with
   exponential backoff and jitter. A deadlock or serialization failure first
   commits the batch so far (releasing every lock) and retries the event at
   once, up to twice. Effects in the database happen exactly once; a handler
   may be called again for an event whose first run was rolled back;
3. when idle, waits on ``LISTEN`` (woken by ``enqueue``'s ``NOTIFY``), polling
   every ``poll_interval`` seconds and at the next scheduled retry anyway.

A worker that dies leaves its claimed events ``processing`` under a lease
that expires: any worker then claims them again, and one whose attempts are
used up goes ``dead``. SIGTERM/SIGINT: stop claiming, finish the event in
hand, commit, release the rest of the batch to ``pending``, exit 0; a second
signal exits at once (the lease covers what was in hand). A lost connection
is reopened; the batch it interrupted is released.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .. import plugins
from ..config import load_settings
from ..db import ConvdbDatabase, init, open_database, resolve_url
from ..exceptions import PayloadError, QueueError
from ..plugins import BatchHandler, Handler
from .manager import QueueManager, describe, is_connection_error, is_transient, sqlstate

Echo = Callable[[str], None]
RETRY_AT_ONCE_SQLSTATES = {"40001", "40P01"}


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class WorkerConfig:
    batch_size: int = 1000  # per claim and transaction; see README (queue) for the trade-off
    lease_seconds: float = 60.0
    max_attempts: int = 5
    backoff_base: float = 2.0  # seconds before the first retry; doubles each attempt
    backoff_max: float = 3600.0
    poll_interval: float = 2.0
    concurrency: int = 1
    burst: bool = False
    progress_interval: float = 5.0  # 0: no progress line
    reconnect_give_up: float = 60.0  # burst mode: seconds without a database before failing

    def backoff(self, attempts: int) -> float:
        """Exponential backoff with "equal jitter": between half and all of the step."""
        step = min(self.backoff_max, self.backoff_base * 2 ** max(attempts - 1, 0))
        return step / 2 + random.uniform(0, step / 2)


@dataclass
class Counters:
    done: int = 0
    retried: int = 0
    dead: int = 0
    released: int = 0
    lost: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self.lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)


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
        self.echo = echo
        self.counters = Counters()
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self._stopping = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self._errors: list[BaseException] = []

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
        self.echo(
            f"convdb queue-worker: {signal.Signals(signum).name} received, finishing the events "
            "in hand (send it again to exit at once)"
        )
        self.stop()

    def run(self) -> Counters:
        """Run until stopped (or, in burst mode, until nothing is due); the counters."""
        in_main = threading.current_thread() is threading.main_thread()
        previous = {}
        if in_main:
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, self._on_signal)
        threads = [
            threading.Thread(target=self._thread_main, args=(n,), name=f"convdb-worker-{n}")
            for n in range(max(self.config.concurrency, 1))
        ]
        try:
            for thread in threads:
                thread.start()
            self._supervise(threads)
        finally:
            self.stop()
            for thread in threads:
                thread.join()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            os.close(self._wake_r)
            os.close(self._wake_w)
        if self._errors:
            error = self._errors[0]
            if isinstance(error, QueueError):
                raise error
            raise QueueError(f"queue worker failed: {describe(error)}") from error
        return self.counters

    def _supervise(self, threads: list[threading.Thread]) -> None:
        interval = self.config.progress_interval
        started = last_at = time.monotonic()
        last_total = 0
        while any(t.is_alive() for t in threads):
            next(t for t in threads if t.is_alive()).join(0.2)
            if not interval or time.monotonic() - last_at < interval:
                continue
            now, c = time.monotonic(), self.counters
            total = c.done + c.dead + c.retried
            rate = (total - last_total) / (now - last_at)
            last_total, last_at = total, now
            self.echo(self._progress(rate))
        if interval and not self._errors:
            c = self.counters
            elapsed = max(time.monotonic() - started, 1e-9)
            self.echo(self._progress((c.done + c.dead + c.retried) / elapsed, final=True))

    def _progress(self, rate: float, final: bool = False) -> str:
        c = self.counters
        try:
            depth = str(QueueManager(self.db).depth())
        except QueueError:
            depth = "?"
        finally:
            self.db.close()
        label = "finished" if final else "progress"
        return (
            f"convdb queue-worker {label}: {rate:.1f} events/s, done {c.done}, "
            f"retried {c.retried}, dead {c.dead}, queue depth {depth}"
        )

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
                    worker_id, cfg.batch_size, cfg.lease_seconds, cfg.max_attempts
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
                self._process(manager, worker_id, events)
            elif cfg.burst:
                return

    def _sleep(self, seconds: float) -> None:
        self._stopping.wait(seconds)

    def _process(self, manager: QueueManager, worker_id: str, events: list) -> None:
        if self.stopping or not self._process_batch(manager, worker_id, events):
            self._process_each(manager, worker_id, events)

    def _process_batch(self, manager: QueueManager, worker_id: str, events: list) -> bool:
        """The fast path: the whole batch in one transaction, no savepoints.

        The events still ours are marked ``done`` in one statement first (it
        also locks them), then the handlers run one after the other (an event
        type with a batch handler gets all its events in one call, see
        :mod:`convdb.plugins`); refused events become ``dead``. True when the batch is
        finished; False when something failed: the transaction was rolled back
        and :meth:`_process_each` redoes the batch event by event, so one bad
        event never fails its neighbours (their handlers then run a second
        time, on a database that has none of the first run's writes).
        """
        in_hand = None
        try:
            with self.db.atomic():
                # Done first: locks the rows still ours; rolled back on failure.
                owned = manager.claim_done([e.id for e in events], worker_id)
                if len(owned) < len(events):
                    self.counters.add(lost=len(events) - len(owned))
                    events = [e for e in events if e.id in owned]
                refused: dict[int, str] = {}
                for event_type, group in _by_type(events).items():
                    handler = self.handlers.get(event_type)
                    batch = self.batch_handlers.get(event_type)
                    if handler is None:
                        refused.update((e.id, self._unknown(event_type)) for e in group)
                    elif batch is not None and len(group) > 1:
                        in_hand = group
                        refused.update((i, describe(exc)) for i, exc in batch(group).items())
                    else:
                        for event in group:
                            in_hand = event
                            handler(event)
                in_hand = None
                for event_id, error in refused.items():
                    manager.refuse(event_id, worker_id, error)
        except Exception as exc:
            if not is_connection_error(exc) or sqlstate(exc) in RETRY_AT_ONCE_SQLSTATES:
                return False
            if isinstance(in_hand, list):
                manager.reset_connection()  # which event broke it? find out one by one
                return False
            if not manager.db.is_closed():
                self.echo(f"convdb queue-worker: batch failed: {describe(exc)}")
            self._recover(manager, worker_id, events, in_hand, exc)
            return True
        self.counters.add(done=len(events) - len(refused), dead=len(refused))
        return True

    def _unknown(self, event_type: str) -> str:
        known = ", ".join(sorted(self.handlers)) or "none"
        return f"unknown event type {event_type!r}: no handler (known: {known})"

    def _process_each(self, manager: QueueManager, worker_id: str, events: list) -> None:
        """The fallback: each event in its own savepoint within the batch transaction."""
        todo = events
        retried_at_once: dict[int, int] = {}
        while todo:
            in_hand = None
            try:
                with self.db.atomic():
                    owned = manager.lock_owned([e.id for e in todo], worker_id)
                    if len(owned) < len(todo):
                        self.counters.add(lost=len(todo) - len(owned))
                        todo = [e for e in todo if e.id in owned]
                    done, counts, rest = [], {"retried": 0, "dead": 0}, []
                    for i, event in enumerate(todo):
                        if self.stopping:
                            rest = todo[i:]
                            manager.release([e.id for e in rest], worker_id)
                            self.counters.add(released=len(rest))
                            rest = []
                            break
                        in_hand = event
                        manager.savepoint(first=i == 0)
                        outcome = self._dispatch(manager, worker_id, event, retried_at_once)
                        if outcome == "again":
                            rest = todo[i:]  # commit what is done, then retry this one
                            break
                        if outcome == "done":
                            done.append(event.id)
                        else:
                            counts[outcome] += 1
                    manager.mark_done(done, worker_id)
                    in_hand = None
                self.counters.add(done=len(done), **counts)
                todo = rest
            except Exception as exc:
                if not (is_connection_error(exc) or manager.db.is_closed()):
                    self.echo(f"convdb queue-worker: batch failed: {describe(exc)}")
                self._recover(manager, worker_id, todo, in_hand, exc)
                return

    def _dispatch(self, manager, worker_id: str, event, retried_at_once: dict) -> str:
        """Run one event's handler inside the open savepoint; its outcome."""
        handler = self.handlers.get(event.event_type)
        try:
            if handler is None:
                raise PayloadError(self._unknown(event.event_type))
            handler(event)
            return "done"
        except Exception as exc:
            if is_connection_error(exc) and sqlstate(exc) not in RETRY_AT_ONCE_SQLSTATES:
                raise
            manager.rollback_to_savepoint()
            error = describe(exc)
            if sqlstate(exc) in RETRY_AT_ONCE_SQLSTATES and retried_at_once.get(event.id, 0) < 2:
                retried_at_once[event.id] = retried_at_once.get(event.id, 0) + 1
                return "again"
            if not is_transient(exc):
                manager.mark_dead(event.id, worker_id, error)
                return "dead"
            if event.attempts >= self.config.max_attempts:
                manager.mark_dead(
                    event.id, worker_id, f"gave up after {event.attempts} attempts: {error}"
                )
                return "dead"
            manager.mark_retry(event.id, worker_id, error, self.config.backoff(event.attempts))
            return "retried"

    def _recover(self, manager, worker_id: str, todo: list, in_hand, exc: Exception) -> None:
        """After a batch failed as a whole: reconnect and hand its events back."""
        self.echo(f"convdb queue-worker: {describe(exc)}; reconnecting and releasing the batch")
        manager.reset_connection()
        for delay in (0.1, 0.5, 1, 2, 5):
            try:
                manager.connect()
                with self.db.atomic():
                    others = [e.id for e in todo if e is not in_hand]
                    manager.release(others, worker_id)
                    if in_hand is not None:
                        error = describe(exc)
                        backoff = self.config.backoff(in_hand.attempts)
                        if in_hand.attempts >= self.config.max_attempts:
                            manager.mark_dead(in_hand.id, worker_id, error)
                        else:
                            manager.mark_retry(in_hand.id, worker_id, error, backoff)
                self.counters.add(released=len(others))
                return
            except Exception:
                manager.reset_connection()
                self._sleep(delay)
        # Still no database: the leases expire and another worker takes over.


def _callables(mapping: Mapping[str, object], what: str) -> dict:
    for event_type, handler in mapping.items():
        if not callable(handler):
            raise TypeError(f"{what} for {event_type!r} is not callable: {handler!r}")
    return dict(mapping)


def _by_type(events: list) -> dict[str, list]:
    groups: dict[str, list] = {}
    for event in events:
        groups.setdefault(event.event_type, []).append(event)
    return groups


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
    db = open_database(url or resolve_url(settings))
    db.close()
    init(db)
    worker = Worker(db, handlers=handlers, batch_handlers=batch_handlers, config=config, echo=echo)
    return worker.run()
