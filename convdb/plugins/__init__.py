"""Plugins: installed packages that extend the schema and the queue.

A plugin is an installed distribution with an entry point in the group
``convdb.plugins`` that names a :class:`Plugin`::

    # convdb_tags/__init__.py
    from convdb.plugins import Plugin

    plugin = Plugin(
        name="tags",                          # unique; names its history table
        migrations="convdb_tags.migrations",  # package of NNN_name.py modules
        depends_on=["core"],                  # migrated after these
        handlers={"conversation.tagged": handle_tagged},
        batch_handlers={},                    # optional: event type -> handler of a list
        adapters={},                          # optional: webhook adapters by name
        validators={"conversation.tagged": check_tagged},  # optional: the doors' check
    )

    # pyproject.toml
    [project.entry-points."convdb.plugins"]
    tags = "convdb_tags:plugin"

The core registers itself the same way, as the plugin ``core``
(:mod:`convdb.core`). Nothing else is ever scanned: only entry points.

Library surface (the queue worker and the CLI use these):

- :func:`scan` — every entry point, loaded and validated; never raises for a
  broken plugin, but lists it in :attr:`Scan.problems` (what ``convdb
  plugins`` shows).
- :func:`discover` — the valid plugins, or :class:`PluginError` for the
  first broken one (import failure, invalid object, duplicate name, missing
  migrations package), naming the plugin, its distribution and what to do.
- :func:`ordered_plugins` — :func:`discover` in migration order: ``core``
  first, then every plugin after its dependencies, independent plugins by
  name. A missing dependency or a cycle is a :class:`PluginError` naming the
  plugins involved, raised before anything touches a database.
- :func:`load_handlers`, :func:`load_batch_handlers`, :func:`load_adapters`,
  :func:`load_validators` — ``{name: object}`` over every plugin (``core``'s included). Two plugins
  claiming one event type (or adapter name) is a :class:`PluginError`
  naming both. The queue worker and the receiver call them once at start-up.
- :func:`order`, :func:`dependencies`, :func:`dependents` — the graph, on
  any list of :class:`Found` (pure functions).

Handlers and adapters may be given as objects or as ``"module:attribute"``
strings, imported when they are loaded; the core uses strings so that
discovering plugins never imports the ingest or receiver code.

Validators: a validator takes an event's payload and returns the payload to
store (repaired, or None for as given), or raises
:class:`~convdb.exceptions.PayloadError` naming the bad field. ``enqueue`` and
the receiver call it before they accept an event
(:mod:`convdb.queue.acceptance`), so nothing they accept is refused by the
worker for good; the handler of the same type should call the same function.

Batch handlers: a batch handler takes the list of a claimed batch's events of
its type and returns ``{event_id: exception}`` for the events it refused
without writing anything (they go ``dead``). The worker calls it for a batch
of two or more such events, inside the batch's transaction; if it raises, the
transaction is rolled back and the events are redone one by one with the
one-event handler, which every batch handler must have beside it.
"""

from .discovery import (
    CORE_ENTRY_POINT,
    discover,
    load_adapters,
    load_batch_handlers,
    load_handlers,
    load_validators,
    ordered_plugins,
    scan,
    scan_with_core,
)
from .graph import dependencies, dependents, order
from .plugin import (
    CORE_NAME,
    ENTRY_POINT_GROUP,
    EVENT_TYPE_RE,
    NAME_RE,
    BatchHandler,
    Found,
    Handler,
    Plugin,
    Problem,
    Scan,
    Validator,
)

__all__ = [
    "CORE_ENTRY_POINT",
    "CORE_NAME",
    "ENTRY_POINT_GROUP",
    "EVENT_TYPE_RE",
    "NAME_RE",
    "BatchHandler",
    "Found",
    "Handler",
    "Plugin",
    "Problem",
    "Scan",
    "Validator",
    "dependencies",
    "dependents",
    "discover",
    "load_adapters",
    "load_batch_handlers",
    "load_handlers",
    "load_validators",
    "order",
    "ordered_plugins",
    "scan",
    "scan_with_core",
]
