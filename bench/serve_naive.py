"""The naive receiver the group commit is measured against: the same app, one INSERT
and one commit per request, on a small pool of connections.

``python -m bench.serve_naive --port P`` serves it like ``convdb serve`` does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import queue

import psycopg2

from convdb.serve.adapters import Rejection
from convdb.serve.app import create_app as _create_app
from convdb.serve.groupcommit import GroupWriter
from convdb.serve.pg import Unavailable, close_quietly, open_connection

INSERT_ONE = """
INSERT INTO inbound_events (event_type, payload, idempotency_key)
VALUES (%s, %s::jsonb, %s)
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING id
"""
POOL = 16


class NaiveWriter(GroupWriter):
    """One transaction per request, ``POOL`` connections used by ``POOL`` threads."""

    def __init__(self, url: str, **kwargs) -> None:
        super().__init__(url, **kwargs)
        self._free: queue.SimpleQueue = queue.SimpleQueue()
        for _ in range(POOL):
            self._free.put(None)

    def start(self) -> None:
        pass

    async def store(self, endpoint_id, key, delivery, *, timeout, text=None, **_options):
        # no nonces here; the receiver hands the accepted text
        payload = text or json.dumps(delivery.payload, ensure_ascii=False, separators=(",", ":"))
        return await asyncio.to_thread(self._insert, delivery.event_type, payload, key)

    def _insert(self, event_type: str, payload: str, key: str) -> str:
        conn = self._free.get()
        try:
            if conn is None:
                conn = open_connection(self._url, name="naive", statement_timeout=10)
            with conn.cursor() as cur:
                cur.execute(INSERT_ONE, (event_type, payload, key))
                stored = cur.fetchone() is not None
            conn.commit()
            return "stored" if stored else "duplicate"
        except psycopg2.DataError as exc:
            conn.rollback()
            raise Rejection.malformed("refused_by_database", str(exc)[:200]) from None
        except psycopg2.Error as exc:
            close_quietly(conn)
            conn = None
            raise Unavailable(str(exc)) from None
        finally:
            self._free.put(conn)

    @property
    def depth(self) -> int:
        return 0

    def close(self, timeout: float = 30.0) -> None:
        while not self._free.empty():
            close_quietly(self._free.get())


def create_app():
    return _create_app(writer=NaiveWriter)


if __name__ == "__main__":
    from convdb.serve import server

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    server.run("127.0.0.1", args.port, 1, app="bench.serve_naive:create_app")
