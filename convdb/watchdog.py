"""A deadline on each database call: past it, the query is cancelled and the connection dropped.

TCP keepalives (:mod:`convdb.pgconnect`) notice a server that vanished. They
cannot notice one whose kernel still acknowledges while nothing answers (a
wedged proxy or load balancer, a frozen process): a thread waiting for that
answer would wait forever, holding its connection's lock, so that even
``close()`` blocks. A :class:`Watchdog` thread watches the calls it was told
about (:meth:`Watchdog.guard`); one still running past its deadline is
aborted (:func:`abort`):

1. the connection's socket is shut down, so the waiting thread gets a
   "server closed the connection" error at once, discards the connection and
   opens another (:func:`convdb.pgerrors.is_connection_error`);
2. from a thread of its own (it may not get through either), a new
   connection to the same server cancels the query
   (``pg_cancel_backend``, for a backend of that pid and application name),
   so that the server stops it and releases its locks if it can still hear.
   Not libpq's ``PQcancel``: psycopg2 holds the interpreter's lock while it
   connects, and a server that drops packets would freeze every thread.
   What the cancel cannot reach (a session left idle in its transaction)
   the server ends by itself: convdb's sessions that must not hang set
   ``idle_in_transaction_session_timeout``.

A call that ends is forgotten under the watchdog's lock before its thread
may close the connection, so the socket that is shut down is always the
call's own.

::

    watchdog = Watchdog("convdb serve", url, on_abort=log.warning)
    with watchdog.guard(conn, seconds=12, what="group commit"):
        cur.execute(...)
        conn.commit()
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psycopg2

from .dburl import hosts
from .pgconnect import connect_params

# How often the watchdog looks; a deadline is met within this much.
TICK = 0.2


@dataclass(eq=False)
class Call:
    """One database call being watched."""

    conn: object  # a psycopg2 connection
    fd: int
    deadline: float
    what: str
    started: float
    aborted: bool = False

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started


class Watchdog:
    """Aborts watched calls that run past their deadline; one thread, started on first use."""

    def __init__(
        self, name: str, url: str | None = None, on_abort: Callable[[str], None] | None = None
    ) -> None:
        self.name = name
        self.url = url  # where to send the cancel (None: the socket is only shut down)
        self._on_abort = on_abort
        self._calls: set[Call] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.aborted = 0  # calls aborted so far

    @contextlib.contextmanager
    def guard(self, conn, seconds: float, what: str) -> Iterator[Call | None]:
        """Watch the calls made on ``conn`` inside the block; abort them after ``seconds``."""
        try:
            fd = conn.fileno()
        except Exception:  # closed already: the call fails at once, nothing to watch
            yield None
            return
        now = time.monotonic()
        call = Call(conn, fd, now + seconds, what, now)
        with self._lock:
            self._calls.add(call)
            self._start()
        try:
            yield call
        finally:
            with self._lock:
                self._calls.discard(call)

    def busy(self) -> list[Call]:
        """The calls being watched now, oldest first."""
        with self._lock:
            return sorted(self._calls, key=lambda c: c.started)

    def expire(self, reason: str) -> int:
        """Abort every call being watched now (a shutdown that cannot wait); how many."""
        with self._lock:
            calls = [c for c in self._calls if not c.aborted]
            for call in calls:
                self._abort(call, reason)
        return len(calls)

    def join(self, thread: threading.Thread, timeout: float, log: Callable[[str], None]) -> bool:
        """Wait up to ``timeout`` s for ``thread`` (a shutdown), saying why when it is slow.

        A thread still waiting on the database after ``timeout`` gets its
        calls aborted and a few more seconds; False if it still has not ended.
        """
        thread.join(min(1.0, timeout))
        if thread.is_alive():
            calls = self.busy()
            if calls:
                log(
                    f"{self.name}: shutting down; waiting up to {timeout:g} s for the database to "
                    f"answer {calls[0].what} (no answer for {calls[0].seconds:.1f} s)"
                )
            thread.join(max(timeout - 1.0, 0))
        if thread.is_alive():
            log(f"{self.name}: still no answer from the database; dropping its connections")
            self.expire("shutdown")
            thread.join(5.0)
        return not thread.is_alive()

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._watch, name=f"{self.name} watchdog", daemon=True
            )
            self._thread.start()

    def _watch(self) -> None:
        while True:
            time.sleep(TICK)
            now = time.monotonic()
            with self._lock:
                for call in [c for c in self._calls if not c.aborted and c.deadline <= now]:
                    self._abort(call, "no answer")

    def _abort(self, call: Call, reason: str) -> None:
        # Under self._lock: the call's thread cannot have closed the connection yet.
        call.aborted = True
        self.aborted += 1
        if self._on_abort is not None:
            with contextlib.suppress(Exception):
                self._on_abort(
                    f"{self.name}: {call.what} has had {reason} from the database for "
                    f"{call.seconds:.1f} s; cancelling it and dropping the connection"
                )
        abort(call.conn, self.url, call.fd)


def abort(conn, url: str | None = None, fd: int | None = None) -> None:
    """Shut ``conn``'s socket down now and, given ``url``, cancel its query in the background.

    The thread blocked on ``conn`` gets an error at once; ``conn`` is
    useless afterwards and must be closed by its owner.
    """
    if url is not None:
        try:
            info = conn.info
            target = (
                info.backend_pid,
                info.host,
                str(info.port),
                conn.get_parameter_status("application_name"),
            )
        except Exception:  # closed meanwhile: nothing to cancel
            target = None
        if target is not None:
            threading.Thread(
                target=_cancel, args=(url, *target), name="convdb cancel", daemon=True
            ).start()
    if fd is None:
        fd = conn.fileno()
    with contextlib.suppress(OSError):
        sock = socket.socket(fileno=os.dup(fd))
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.close()


CANCEL = """
SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE pid = %s AND application_name = %s
"""


def _cancel(url: str, pid: int, host: str, port: str, application: str | None) -> None:
    """``pg_cancel_backend`` on the server ``host:port`` of ``url`` (best effort)."""
    one = next((h.params for h in hosts(url) if (h.host, h.port) == (host, port)), None)
    if one is None:  # a socket folder libpq chose itself, a hostaddr: the URL's own hosts
        one = {}
    try:
        conn = psycopg2.connect(
            url,
            application_name="convdb cancel",
            **{**connect_params(url, "write"), "target_session_attrs": "any", **one},
        )
    except Exception:
        return
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(CANCEL, (pid, application or ""))
    except Exception:
        pass
    finally:
        conn.close()


__all__ = ["Call", "Watchdog", "abort"]
