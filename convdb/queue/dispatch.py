"""Processing one claimed batch: decode, run the handlers, record each event's outcome.

:class:`Dispatcher` is what each worker thread of :mod:`convdb.queue.worker`
hands a claimed batch to. The fast path runs the whole batch in one
transaction; when it fails, the batch is split (around the event whose
handler raised, else in halves) and each part is processed
the same way, down to single events, each run in a savepoint and its
failure classified (:func:`~convdb.pgerrors.is_transient`): ``dead``
at once when permanent, ``pending`` with backoff when transient. Whatever
a handler raises, ``BaseException`` included, fails its own event only.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ..exceptions import PayloadError, QueueError
from ..pgerrors import READ_ONLY_SQLSTATE, is_connection_error, is_transient, sqlstate
from . import limits as limits_mod
from .acceptance import Acceptance
from .limits import Limits
from .manager import QueueManager, describe

Echo = Callable[[str], None]
RETRY_AT_ONCE_SQLSTATES = {"40001", "40P01"}


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


class Dispatcher:
    """Processes claimed batches for a worker (shared by its threads)."""

    def __init__(
        self,
        db,
        *,
        handlers: Mapping,
        batch_handlers: Mapping,
        max_attempts: int,
        backoff: Callable[[int], float],
        limits: Limits,
        counters: Counters,
        acceptance: Acceptance | None = None,
        echo: Echo,
        stopping: threading.Event,
    ) -> None:
        self.db = db
        self.handlers = handlers
        self.batch_handlers = batch_handlers
        self.max_attempts = max_attempts
        self.backoff = backoff  # seconds before the next try, by attempts used
        self.limits = limits
        # The doors' rules for the envelope and unknown types (convdb.queue.acceptance).
        self.acceptance = acceptance or Acceptance.of_handlers(handlers, limits=limits)
        self.counters = counters
        self.echo = echo
        self._stopping = stopping

    def process(self, manager: QueueManager, worker_id: str, events: list) -> None:
        """Decode, then process the claimed ``events`` in groups that shrink around failures."""
        problems = self._decode(events)
        if self._stopping.is_set():
            self._process_each(manager, worker_id, events, problems)
            return
        todo = deque([events])
        while todo:
            group = todo.popleft()
            if len(group) == 1 or self._stopping.is_set():
                self._process_each(manager, worker_id, group, problems)
                continue
            todo.extendleft(reversed(self._process_batch(manager, worker_id, group, problems)))

    def _decode(self, events: list) -> dict[int, str]:
        """Decode each claimed payload in place; ``{event id: why it cannot be processed}``.

        Decoding is part of handling an event: a payload over a limit, or
        one the JSON parser refuses, fails its own event and nothing else.
        """
        problems = {}
        for event in events:
            data = event.__data__
            try:
                self.acceptance.envelope(data["event_type"], data["idempotency_key"])
                if data["payload"] is None:
                    raise limits_mod.size_error(data["payload_bytes"], self.limits)
                data["payload"] = limits_mod.decode(data["payload"], self.limits)
            except PayloadError as exc:
                data["payload"] = None
                problems[event.id] = f"payload: {describe(exc)}"
            except QueueError as exc:
                data["payload"] = None
                problems[event.id] = describe(exc)
        return problems

    def _process_batch(
        self, manager: QueueManager, worker_id: str, events: list, problems: dict[int, str]
    ) -> list[list]:
        """The fast path: ``events`` in one transaction, no savepoints; what is left to do.

        The events still ours are marked ``done`` in one statement first (it
        also locks them), then the handlers run one after the other (an event
        type with a batch handler gets all its events in one call, see
        :mod:`convdb.plugins`); refused events (undecodable, unknown type, or
        refused by a batch handler) become ``dead``. Returns ``[]`` when the
        batch is finished. When anything failed, the transaction was rolled
        back and the batch comes back split for the caller to process: around
        the event whose handler raised, else in halves. Their handlers then
        run again, on a database that has none of the first run's writes.
        """
        in_hand = None
        try:
            with self.db.atomic():
                # Done first: locks the rows still ours; rolled back on failure.
                owned = manager.claim_done([e.id for e in events], worker_id)
                if len(owned) < len(events):
                    self.counters.add(lost=len(events) - len(owned))
                    events = [e for e in events if e.id in owned]
                refused = {e.id: problems[e.id] for e in events if e.id in problems}
                ready = [e for e in events if e.id not in refused]
                for event_type, group in _by_type(ready).items():
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
        except BaseException as exc:
            if is_connection_error(exc) and sqlstate(exc) not in RETRY_AT_ONCE_SQLSTATES:
                if isinstance(in_hand, list):
                    manager.reset_connection()  # which event broke it? find out by halves
                    return _split(events, None)
                if not manager.db.is_closed():
                    self.echo(f"convdb queue-worker: batch failed: {describe(exc)}")
                self._recover(manager, worker_id, events, in_hand, exc)
                return []
            return _split(events, in_hand)
        self.counters.add(done=len(events) - len(refused), dead=len(refused))
        return []

    def _unknown(self, event_type: str) -> str:
        return self.acceptance.unknown(event_type).message

    def _process_each(
        self, manager: QueueManager, worker_id: str, events: list, problems: dict[int, str]
    ) -> None:
        """Each event in its own savepoint within one transaction (an event alone; shutdown)."""
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
                        if self._stopping.is_set():
                            rest = todo[i:]
                            manager.release([e.id for e in rest], worker_id)
                            self.counters.add(released=len(rest))
                            rest = []
                            break
                        in_hand = event
                        manager.savepoint(first=i == 0)
                        outcome = self._dispatch(
                            manager, worker_id, event, problems.get(event.id), retried_at_once
                        )
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

    def _dispatch(self, manager, worker_id: str, event, problem, retried_at_once: dict) -> str:
        """Run one event's handler inside the open savepoint; its outcome.

        Any exception the handler raises is the event's failure, classified
        by :func:`~convdb.pgerrors.is_transient`; only a lost connection
        leaves this method (the caller reconnects).
        """
        handler = self.handlers.get(event.event_type)
        try:
            if problem is not None:
                raise PayloadError(problem)
            if handler is None:
                raise PayloadError(self._unknown(event.event_type))
            handler(event)
            return "done"
        except BaseException as exc:
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
            if event.attempts >= self.max_attempts:
                manager.mark_dead(
                    event.id, worker_id, f"gave up after {event.attempts} attempts: {error}"
                )
                return "dead"
            manager.mark_retry(event.id, worker_id, error, self.backoff(event.attempts))
            return "retried"

    def _recover(self, manager, worker_id: str, todo: list, in_hand, exc: Exception) -> None:
        """After a batch failed as a whole: reconnect and hand its events back.

        The event in hand is retried with backoff (its handler may have broken
        the connection), unless the connection was on a standby (25006): no
        event's fault, so it is given back with the others. Shutting down, one
        try only: the leases cover the rest.
        """
        self.echo(f"convdb queue-worker: {describe(exc)}; reconnecting and releasing the batch")
        manager.reset_connection()
        if sqlstate(exc) == READ_ONLY_SQLSTATE:
            in_hand = None
        for delay in (0.1, 0.5, 1, 2, 5):
            try:
                manager.connect()
                with self.db.atomic():
                    others = [e.id for e in todo if e is not in_hand]
                    manager.release(others, worker_id)
                    if in_hand is not None:
                        error = describe(exc)
                        backoff = self.backoff(in_hand.attempts)
                        if in_hand.attempts >= self.max_attempts:
                            manager.mark_dead(in_hand.id, worker_id, error)
                        else:
                            manager.mark_retry(in_hand.id, worker_id, error, backoff)
                self.counters.add(released=len(others))
                return
            except Exception:
                manager.reset_connection()
                if self._stopping.is_set():
                    return
                self._stopping.wait(delay)
        # Still no database: the leases expire and another worker takes over.


def _split(events: list, culprit) -> list[list]:
    """``events`` in smaller groups, in order, after their batch failed.

    Around ``culprit`` (an event whose handler raised) when it is known: the
    events before it, it alone, the events after it. Otherwise in halves
    (bisection): a half without a bad event commits whole, and groups stay
    big, since a set-based batch pays its fixed statements whatever its size.
    """
    if culprit is not None and not isinstance(culprit, list) and culprit in events:
        i = events.index(culprit)
        parts = [events[:i], [culprit], events[i + 1 :]]
    else:
        middle = len(events) // 2
        parts = [events[:middle], events[middle:]]
    return [part for part in parts if part]


def _by_type(events: list) -> dict[str, list]:
    groups: dict[str, list] = {}
    for event in events:
        groups.setdefault(event.event_type, []).append(event)
    return groups
