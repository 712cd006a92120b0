"""The core, registered as the plugin ``core`` through the same entry point group.

``pyproject.toml`` declares ``core = "convdb.core_plugin:plugin"`` in the group
``convdb.plugins``, so the core's migrations and its queue handlers are found
exactly like a third-party plugin's. The handlers are named by string and
imported only by :func:`convdb.plugins.load_handlers`, so listing or
migrating plugins never imports the ingest code.
"""

from __future__ import annotations

from .plugins import CORE_NAME, Plugin

plugin = Plugin(
    name=CORE_NAME,
    migrations="convdb.migrations",
    depends_on=[],
    handlers={
        "message.received": "convdb.ingest:handle_message_received",
        "message.sent": "convdb.ingest:handle_message_sent",
    },
)
