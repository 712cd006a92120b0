"""The webhook receiver: ``convdb serve``, its adapters, endpoints and group commit.

For adapter authors (a plugin's ``Plugin(adapters={...})``)::

    from convdb.serve import Adapter, Delivery, Rejection, WebhookRequest, WebhookResponse
    from convdb.serve import Batch, Refused  # a request carrying many events

For applications that mount the receiver: :func:`convdb.serve.app.create_app`.

Modules: :mod:`~convdb.serve.adapters` (the interface, with
:mod:`~convdb.serve.request` and :mod:`~convdb.serve.rejection`),
:mod:`~convdb.serve.standard` (Standard Webhooks, the core's adapter),
:mod:`~convdb.serve.registry`, :mod:`~convdb.serve.endpoints`,
:mod:`~convdb.serve.secrets`, :mod:`~convdb.serve.groupcommit` (group commit),
:mod:`~convdb.serve.reader`, :mod:`~convdb.serve.metrics`,
:mod:`~convdb.serve.settings`, :mod:`~convdb.serve.urls`,
:mod:`~convdb.serve.app`, :mod:`~convdb.serve.server`.
"""

from .adapters import (
    Adapter,
    Batch,
    Delivery,
    Endpoint,
    Headers,
    Outcome,
    Refused,
    Rejection,
    WebhookRequest,
    WebhookResponse,
)

__all__ = [
    "Adapter",
    "Batch",
    "Delivery",
    "Endpoint",
    "Headers",
    "Outcome",
    "Refused",
    "Rejection",
    "WebhookRequest",
    "WebhookResponse",
]
