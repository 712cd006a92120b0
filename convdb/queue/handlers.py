"""The handler registry: which callable processes which event type.

A handler takes one argument, the ``InboundEvent`` (``.payload`` is a dict),
and runs inside the transaction that marks the event done (SPEC.md). convdb's
own handlers ingest the canonical message events; installed plugins add
theirs through :func:`convdb.plugins.load_handlers` when that module exists.

Batch handlers (optional): a handler may carry a ``batch`` attribute, a
callable taking the list of a batch's events of its type and returning
``{event_id: exception}`` for the events it refused without writing anything
(they go ``dead``). The worker calls it when a batch holds two or more such
events; if it raises, the batch is rolled back and redone event by event with
the one-event handler. convdb's canonical handlers have one
(:func:`convdb.ingest_batch.handle_batch`). A handler may be called again for
an event whose first run was rolled back: its database writes happen exactly
once, side effects outside the database must be idempotent.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping

Handler = Callable[[object], object]


def builtin_handlers() -> dict[str, Handler]:
    from .. import ingest

    return {
        "message.received": ingest.handle_message_received,
        "message.sent": ingest.handle_message_sent,
    }


def default_handlers() -> dict[str, Handler]:
    """convdb's own handlers, overlaid with every installed plugin's."""
    handlers = builtin_handlers()
    if importlib.util.find_spec("convdb.plugins") is not None:
        from .. import plugins

        load = getattr(plugins, "load_handlers", None)
        if load is not None:
            handlers.update(load())
    return handlers


def check_handlers(handlers: Mapping[str, Handler]) -> dict[str, Handler]:
    for event_type, handler in handlers.items():
        if not callable(handler):
            raise TypeError(f"handler for {event_type!r} is not callable: {handler!r}")
    return dict(handlers)
