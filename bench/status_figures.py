"""Delivery status's figures (issue 17): the worker and the receiver with status traffic.

- Worker: draining ``message.status`` reports, one per existing outbound
  message (an INSERT into the history and an UPDATE of the message each),
  through the real ``convdb queue-worker --burst``, beside the no-op drain
  of as many events in the same run (the queue's own cost): the ratio.
- Receiver: Twilio status callbacks per second at 64 connections on one
  ``convdb serve``, beside Twilio inbound requests (the shipped MMS sample)
  on the same server in the same run, in the order A B B A (half the time
  each): the ratio. Every request is a new delivery.
"""

from __future__ import annotations

import signal
import time

import psycopg2

from convdb.db import closing, open_database
from convdb.ingest import ingest_messages, parse_message
from convdb.serve.providers import samples
from convdb.serve.server import free_port, serve_command

from . import loadgen, queue_bench
from .provider_figures import SECRETS, _endpoints, _raw, _start
from .report import Figure, say

CUSTOMER_NUMBER = "+12125550100"


def _outbound(i: int) -> dict:
    return {
        "customer": {"key": "bench", "name": "Bench"},
        "provider": {"kind": "sms", "name": "bench-status"},
        "message_id": f"SMst{i:030d}",
        "from": {"address": CUSTOMER_NUMBER},
        "to": [{"address": f"+1415555{i % 10_000:04d}"}],
        "body": f"Your order {i % 50} has shipped",
        "sent_at": "2026-01-05T10:00:00+00:00",
    }


def _messages(url: str, count: int) -> None:
    """``count`` outbound messages, written by the ingest code (untimed)."""
    with closing(open_database(url)) as db:
        for start in range(0, count, 1000):
            batch = [
                parse_message(_outbound(i), "message.sent")
                for i in range(start, min(count, start + 1000))
            ]
            with db.atomic():
                ingest_messages(db, batch)


def _enqueue(url: str, event_type: str, count: int, tag: str) -> None:
    """``count`` pending ``message.status`` payloads (``delivered``, one per message),
    stored as ``event_type``."""
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(
                """
                INSERT INTO inbound_events (event_type, payload, idempotency_key)
                SELECT %s, jsonb_build_object(
                         'customer', jsonb_build_object('key', 'bench'),
                         'provider', jsonb_build_object('kind', 'sms', 'name', 'bench-status'),
                         'message_id', 'SMst' || lpad(i::text, 30, '0'),
                         'status', 'delivered',
                         'detail', 'DELIVRD',
                         'at', '2026-01-05T10:01:00+00:00'),
                       %s || i
                  FROM generate_series(0, %s - 1) AS i
                """,
                (event_type, tag, count),
            )
            cur.execute("VACUUM ANALYZE inbound_events")
    finally:
        conn.close()


def worker_status_figures(server, template: str, sizes) -> list[Figure]:
    count = sizes.status_reports
    ratio = Figure(
        f"worker drain, {count:,} message.status reports for existing messages / no-op drain",
        "x",
        at_least=0.5,
        target_text="≥ 0.5x",
    )
    rates = Figure(f"worker drain, {count:,} message.status reports", "/s", info=True)
    for run in range(sizes.runs):
        url = server.url(server.create("status", template))
        _messages(url, count)
        drained = {}
        kinds = ["noop", "status"] if run % 2 == 0 else ["status", "noop"]  # alternated
        for kind in kinds:
            event_type = "message.received" if kind == "noop" else "message.status"
            _enqueue(url, event_type, count, f"{kind}-{run}-")
            drained[kind] = queue_bench.drain(url, processes=1, noop=kind == "noop", expected=count)
        noop, status = drained["noop"], drained["status"]
        conn = psycopg2.connect(url)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM messages WHERE status = 'delivered'")
                applied = cur.fetchone()[0]
        finally:
            conn.close()
        if applied != count:
            raise RuntimeError(f"status drain applied {applied} of {count} reports")
        ratio.runs.append(status.rate / noop.rate)
        rates.runs.append(status.rate)
        say(
            f"bench: status drain {status.rate:,.0f}/s, no-op drain {noop.rate:,.0f}/s "
            f"({status.rate / noop.rate:.2f}x)"
        )
    return [ratio, rates]


def receiver_status_figures(server, template: str, sizes, notes: list[str]) -> list[Figure]:
    ratio = Figure(
        "webhooks/s, 64 connections, Twilio status callbacks / Twilio inbound",
        "x",
        at_least=0.9,
        target_text="≥ 0.9x",
    )
    status_rate = Figure("webhooks/s, 64 connections, Twilio status callback", "/s", info=True)
    count = int(sizes.serve_seconds * 5_000)
    env = {f"CONVDB_BENCH_{a.upper()}": s for a, s in SECRETS.items()}
    for run in range(sizes.runs):
        url = server.url(server.create("statusserve", template))
        path = _endpoints(url)["twilio"]
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        token = SECRETS["twilio"]
        proc = _start(serve_command(port), url, port, env)
        try:
            stamp = time.time_ns()
            inbound = [
                _raw(path, port, *samples.request("twilio", base + path, token, stamp + i))
                for i in range(count)
            ]
            callbacks = [
                _raw(
                    path,
                    port,
                    *samples.twilio_status_request(
                        base + path, token, f"SM{stamp + i:032x}", "delivered"
                    ),
                )
                for i in range(count)
            ]
            for requests in (inbound, callbacks):
                loadgen.latencies(port, requests[:50], 4)  # warm-up, and a check of the answers
            # A B B A, each on unused deliveries: both kinds see the same server and
            # database state on average (the queue grows, autovacuum runs).
            found: dict[str, list[float]] = {"inbound": [], "status": []}
            half = (count - 50) // 2
            order = [("inbound", 0), ("status", 0), ("status", 1), ("inbound", 1)]
            if run % 2:
                order = [("status", 0), ("inbound", 0), ("inbound", 1), ("status", 1)]
            for kind, part in order:
                requests = (inbound if kind == "inbound" else callbacks)[50:]
                share = requests[part * half : (part + 1) * half]
                load = loadgen.python_load(port, share, 64, sizes.serve_seconds / 2)
                if load.errors:
                    raise RuntimeError(f"twilio {kind}: {load.errors} requests not answered 200")
                found[kind].append(load.rate)
                say(f"bench: twilio {kind}: {load.rate:,.0f}/s at 64 connections")
            found = {kind: sum(rates) / len(rates) for kind, rates in found.items()}
            ratio.runs.append(found["status"] / found["inbound"])
            status_rate.runs.append(found["status"])
            stored = _stored(url)
            if stored.get("message.status", 0) < 50:
                raise RuntimeError(f"status callbacks were not stored as message.status: {stored}")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    notes.append(
        "Status rows: the worker ratio drains one `delivered` report per existing message "
        "against the no-op drain of as many events on the same database; the receiver ratio "
        "loads Twilio status callbacks and Twilio inbound MMS on the same server, one after "
        "the other, with the Python load generator."
    )
    return [ratio, status_rate]


def _stored(url: str) -> dict[str, int]:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT event_type, count(*) FROM inbound_events GROUP BY 1")
            return dict(cur.fetchall())
    finally:
        conn.close()


def status_figures(server, template: str, sizes, notes: list[str]) -> list[Figure]:
    figures = worker_status_figures(server, template, sizes)
    figures += receiver_status_figures(server, template, sizes, notes)
    return figures


__all__ = ["status_figures"]
