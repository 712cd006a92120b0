"""The operator console: ``convdb console``, web pages for the people who run convdb.

A process of its own (never the webhook receiver's port), behind a login:
the queue (counts, the last hour's throughput, the oldest pending event, the
workers seen), dead events (error, payload, retry and purge, one or in bulk),
endpoints (activity from the receiver's counters) and customers (the inbox
and each conversation). Server-rendered, no script, nothing loaded from
outside the machine. See ``docs/console.md``.

Modules: :mod:`~convdb.console.settings` (passwords by reference),
:mod:`~convdb.console.auth` (sessions, CSRF, login rate limit),
:mod:`~convdb.console.web` (headers, forms, templates),
:mod:`~convdb.console.app` (the ASGI app, login),
:mod:`~convdb.console.views` (the pages), :mod:`~convdb.console.data`
(what they read), :mod:`~convdb.console.jobs` (bulk actions),
:mod:`~convdb.console.chart` (the SVG chart), :mod:`~convdb.console.server`
(``convdb console``).
"""
