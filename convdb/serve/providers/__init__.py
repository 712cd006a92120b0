"""Provider adapters of the core: Twilio, SendGrid, Mailgun and Postmark webhooks.

Each module is one adapter, registered in :mod:`convdb.core` exactly as a
third-party plugin registers its own (``Plugin(adapters={...})``):
:mod:`.twilio`, :mod:`.sendgrid`, :mod:`.mailgun`, :mod:`.postmark`. What
they share is in :mod:`.common` (canonical payloads, email headers, basic
auth) and :mod:`.multipart` (streamed ``multipart/form-data``); attachment
bytes go to :mod:`convdb.attachments`. Docs: ``docs/providers/*.md``.
"""
