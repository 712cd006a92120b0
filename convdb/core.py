"""The core, registered as the plugin ``core``: the one place it declares itself.

``pyproject.toml`` declares ``core = "convdb.core:plugin"`` in the group
``convdb.plugins``, so the core's migrations, queue handlers and webhook
adapters are found exactly like a third-party plugin's. Everything is named
by string and imported only when loaded (:func:`convdb.plugins.load_handlers`
and friends), so listing or migrating plugins never imports the ingest code.
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
        "message.status": "convdb.ingest.status:handle_status",
    },
    batch_handlers={
        "message.received": "convdb.ingest:handle_batch",
        "message.sent": "convdb.ingest:handle_batch",
        "message.status": "convdb.ingest.status:handle_status_batch",
    },
    # The doors' check of each event type (convdb.queue.acceptance): the same
    # parse_message the handlers run. A new message.* type adds its line here.
    validators={
        "message.received": "convdb.ingest:validate_received",
        "message.sent": "convdb.ingest:validate_sent",
        "message.status": "convdb.ingest:validate_status",
    },
    adapters={
        "standard": "convdb.serve.standard:StandardWebhooks",
        "twilio": "convdb.serve.providers.twilio:Twilio",
        "sendgrid": "convdb.serve.providers.sendgrid:SendGrid",
        "mailgun": "convdb.serve.providers.mailgun:Mailgun",
        "postmark": "convdb.serve.providers.postmark:Postmark",
        "sendgrid_events": "convdb.serve.providers.sendgrid_events:SendGridEvents",
    },
)
