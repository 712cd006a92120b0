"""One exception tree for convdb, with messages written for operators.

Every error convdb raises on purpose is a :class:`ConvdbError`; a driver
error it wraps stays its ``__cause__``. The CLI (``convdb.cli``) prints
``Error: <message>``, password masked, and exits 1; ``-v`` adds the
traceback and the cause chain. Any other exception is reported as
unexpected, in one line.
"""

from __future__ import annotations


class ConvdbError(Exception):
    """Base class of every error convdb raises on purpose.

    ``hint``, when set, tells the operator what to do next (often a command).
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\nHint: {self.hint}"


class ConfigError(ConvdbError):
    """The configuration is unusable (a malformed DATABASE_URL, a bad setting)."""


class DatabaseError(ConvdbError):
    """The database could not be reached or refused the connection."""


class MigrationError(ConvdbError):
    """A migration could not be applied or rolled back.

    ``source`` names the migration source (``core`` or a plugin) and
    ``migration`` the module, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        migration: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.source = source
        self.migration = migration


class PluginError(ConvdbError):
    """A plugin is broken or the plugin set is inconsistent; ``plugin`` names it."""

    def __init__(self, message: str, *, plugin: str | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.plugin = plugin


class QueueError(ConvdbError):
    """The queue could not store, claim or record an event."""


class DedupCollisionError(ConvdbError):
    """Two different normalized values share one 64-bit dedup key.

    Never merged silently: the insert is refused and the operator is told.
    """


class PayloadError(ConvdbError):
    """An event payload cannot be ingested (missing field, bad type, unknown type).

    A permanent failure: the event goes to ``dead`` at once.
    """


class PayloadTooLargeError(PayloadError):
    """A payload over ``CONVDB_MAX_PAYLOAD_BYTES`` (the receiver answers 413)."""


class TransientError(ConvdbError):
    """Raised by a queue handler for a failure worth retrying (a service that is down).

    The event goes back to ``pending`` with backoff, and ``dead`` after the
    maximum number of attempts. Any other exception a handler raises is
    permanent unless it is a lost connection, a deadlock, a serialization
    failure, a lock or statement timeout, or a cancel (see ``docs/queue.md``).
    """


class SearchError(ConvdbError):
    """A search cannot run: an unknown customer, a query with nothing to search
    for or over a limit, a bad cursor, a statement that ran too long."""
