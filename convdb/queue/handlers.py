"""The handler registry: which callable processes which event type.

A handler takes one argument, the ``InboundEvent`` (``.payload`` is a dict),
and runs inside the transaction that marks the event done (SPEC.md). convdb's
own handlers ingest the canonical message events; installed plugins add
theirs through :func:`convdb.plugins.load_handlers` when that module exists.
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
