"""The receiver's reads on one connection and one thread: endpoints, health, queue depth.

Kept apart from the writer so a health check or an endpoint refresh never
waits behind a group commit, and a slow commit never delays them. A call the
database does not answer in time is aborted by a watchdog
(:mod:`convdb.watchdog`), so the next one gets a new connection instead of
waiting behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import psycopg2

from ..queue.queries import DEPTH
from ..watchdog import Watchdog
from .pg import WATCHDOG_SLACK, Unavailable, close_quietly, is_connection_error, open_connection

T = TypeVar("T")
log = logging.getLogger("convdb.serve")


class Reader:
    """Runs ``fn(connection)`` on the reader thread; reconnects by itself."""

    def __init__(
        self, url: str, *, statement_timeout: float = 2.0, name: str = "convdb serve (reads)"
    ) -> None:
        self._url = url
        self._name = name
        self._statement_timeout = statement_timeout
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="convdb-serve-reader")
        self._conn = None
        self._watchdog = Watchdog(name, url, on_abort=log.warning)
        self._thread: threading.Thread | None = None  # the executor's one thread

    async def run(self, fn: Callable[[object], T], *, timeout: float = 5.0) -> T:
        """``fn(conn)``'s result; :class:`Unavailable` when the database is not there."""
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(
                loop.run_in_executor(self._executor, self._call, fn), timeout
            )
        except TimeoutError:
            raise Unavailable(f"the database did not answer within {timeout:g} s") from None

    def _call(self, fn):
        self._thread = threading.current_thread()
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = open_connection(
                    self._url,
                    name=self._name,
                    statement_timeout=self._statement_timeout,
                )
            try:
                # Half a second past the server's own timeout: before a caller's wait ends
                # (/healthz: 3 s), so its retry on a new connection can still answer.
                deadline = self._statement_timeout + min(WATCHDOG_SLACK, 0.5)
                with self._watchdog.guard(self._conn, deadline, "a read"):
                    value = fn(self._conn)
                    self._conn.commit()
                return value
            except psycopg2.Error as exc:
                lost = is_connection_error(exc)
                close_quietly(self._conn) if lost else self._conn.rollback()
                if lost:
                    self._conn = None
                    if attempt == 1:
                        continue  # a stale connection after a database restart
                raise Unavailable(f"database read failed: {' '.join(str(exc).split())}") from None
            except BaseException:
                # fn refused something (a bad search): the next call gets a clean transaction
                with contextlib.suppress(psycopg2.Error):
                    self._conn.rollback()
                raise
        raise AssertionError("unreachable")

    def close(self, timeout: float = 10.0) -> None:
        """Stop the thread and close the connection; at most ``timeout`` s (then aborted)."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        thread = self._thread
        if thread is None or self._watchdog.join(thread, timeout, log.warning):
            close_quietly(self._conn)
            self._conn = None


def ping(conn) -> bool:
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
        return cur.fetchone()[0] == 1


def queue_depth(conn) -> int:
    """Events waiting for a worker (pending and due), the queue's own count."""
    with conn.cursor() as cur:
        cur.execute(DEPTH)
        return cur.fetchone()[0]


__all__ = ["Reader", "ping", "queue_depth"]
