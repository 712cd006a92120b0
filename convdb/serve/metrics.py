"""Prometheus metrics of the receiver (``GET /metrics``), one set per process or shared.

- ``convdb_webhooks_total{endpoint, outcome, reason}``: every answered
  webhook; ``outcome`` is ``accepted``, ``duplicate`` or ``rejected``
  (and ``refused_event`` once per event refused inside a batch request),
  ``reason`` why a request was rejected (``bad_signature``,
  ``stale_timestamp``, ``unknown_endpoint``, ``too_large``,
  ``database_unavailable``, ...). ``endpoint`` is ``customer/provider`` of a
  known endpoint, ``-`` otherwise (tokens never become labels).
- ``convdb_webhook_duration_seconds{outcome}``: latency, request received to
  answer ready.
- ``convdb_serve_group_rows``: rows per group commit;
  ``convdb_serve_pending_writes``: rows waiting for their commit now.
- ``convdb_queue_depth``: events in ``inbound_events`` waiting for a worker,
  read when scraped.

With several worker processes (``convdb serve --workers N``) the CLI sets
``PROMETHEUS_MULTIPROC_DIR`` before any worker starts, and a scrape answered
by any worker adds up all of them (prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as _multiprocess

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

WEBHOOKS = Counter(
    "convdb_webhooks",
    "Webhook requests answered, by endpoint, outcome and reason",
    ["endpoint", "outcome", "reason"],
)
DURATION = Histogram(
    "convdb_webhook_duration_seconds",
    "Time from a webhook's arrival to its answer",
    ["outcome"],
    buckets=(0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)
GROUP_ROWS = Histogram(
    "convdb_serve_group_rows",
    "Rows stored per group commit",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
PENDING = Gauge(
    "convdb_serve_pending_writes",
    "Rows waiting for their group commit",
    multiprocess_mode="livesum",
)
QUEUE_DEPTH = Gauge(
    "convdb_queue_depth",
    "Events in inbound_events waiting for a worker (read at scrape time)",
    multiprocess_mode="mostrecent",
)


def render() -> tuple[bytes, str]:
    """The metrics text and its content type."""
    if MULTIPROCESS:
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return generate_latest(registry), CONTENT_TYPE_LATEST


def mark_process_dead(pid: int) -> None:
    """Drop a finished worker's live gauges (multiprocess mode only)."""
    if MULTIPROCESS:
        _multiprocess.mark_process_dead(pid)


__all__ = [
    "DURATION",
    "GROUP_ROWS",
    "PENDING",
    "QUEUE_DEPTH",
    "WEBHOOKS",
    "mark_process_dead",
    "render",
]
