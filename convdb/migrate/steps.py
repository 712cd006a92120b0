"""Running one migration module: for real (:func:`apply_one`) or as a trial (:func:`try_one`).

peewee-migrate's own ``run_one`` always wraps a module in a transaction and
records only the name. :func:`apply_one` runs a module the convdb way:

- in one transaction with its history row and checksum (a failure leaves
  nothing of it and records nothing), or,
- for a module that declares ``TRANSACTIONAL = False``, statement by statement
  in autocommit (``CREATE INDEX CONCURRENTLY`` refuses to run in a
  transaction), then records it in a short transaction of its own.

:func:`try_one` runs a module inside a savepoint of the caller's transaction
and captures every SQL statement it sends, at the driver's cursor, so the
statements are exactly what PostgreSQL received (parameters inlined).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import psycopg2.extensions
from playhouse.migrate import Operation

from ..exceptions import MigrationError
from .history import forget_replaced

# statements peewee sends for its own transaction handling, not the module's
_BOOKKEEPING = re.compile(r"^\s*(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE SAVEPOINT)\b", re.I)


def db_error(exc: BaseException) -> str:
    """The first line of a database error (or the exception itself)."""
    original = getattr(exc, "orig", None) or exc.__cause__ or exc
    text = getattr(original, "pgerror", None) or str(original) or type(original).__name__
    return text.strip().splitlines()[0].removeprefix("ERROR:").strip()


def run_operations(migrator) -> None:
    """Run a migrator's queued operations without the transaction ``migrator()`` opens."""
    operations, migrator.__ops__ = migrator.__ops__, []
    for op in operations:
        if isinstance(op, Operation):
            op.run()
        else:
            op()


def apply_one(router, name: str, *, downgrade: bool = False) -> None:
    """Apply (or with ``downgrade`` roll back) module ``name`` of ``router.source``.

    For a squash, the transaction that records it (or deletes its row) also
    forgets the replaced rows it stood for that no other squash accounts for
    (:func:`convdb.migrate.history.forget_replaced`).
    """
    source = router.source
    db = router.database
    squash = source.replaces(name) is not None
    transactional = source.transactional(name)
    up, down = router.read(name)
    migrator = router.migrator
    history = router.model

    def record() -> None:
        if downgrade:
            history.delete().where(history.name == name).execute()
        else:
            history.create(name=name, checksum=source.checksum(name))
        if squash:
            forget_replaced(db, source, name)

    try:
        if transactional:
            with db.atomic():
                (down if downgrade else up)(migrator, db, fake=False)
                migrator()
                record()
        else:
            (down if downgrade else up)(migrator, db, fake=False)
            run_operations(migrator)
            with db.atomic():
                record()
    except Exception as exc:
        migrator.__ops__ = []
        action = "rollback of" if downgrade else "migration"
        what = "failed and was rolled back" if transactional else "(non-transactional) failed"
        hint = (
            "Nothing of it was applied or recorded; fix it and run the command again."
            if transactional
            else "Statements before the failing one stay applied; it was not recorded. Check "
            "the database (a failed CREATE INDEX CONCURRENTLY leaves an INVALID index to "
            "drop), fix the module and run the command again."
        )
        raise MigrationError(
            f"{action} {source.name}/{name} {what}: {db_error(exc)}",
            source=source.name,
            migration=name,
            hint=hint,
        ) from exc


@dataclass
class DryRunStep:
    """One module tried by a dry run: its SQL, why it failed or was skipped, or a note
    that it would only be recorded (a squash)."""

    source: str
    name: str
    statements: list[str] = field(default_factory=list)
    error: str | None = None
    skipped: str | None = None
    recorded: str | None = None


@dataclass
class DryRun:
    steps: list[DryRunStep] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(step.error for step in self.steps)

    @property
    def failed(self) -> DryRunStep | None:
        return next((step for step in self.steps if step.error), None)


@contextlib.contextmanager
def capture_sql(db, sink: list[str]) -> Iterator[None]:
    """Append every statement sent on ``db``'s connection to ``sink`` while active."""
    conn = db.connection()
    previous = conn.cursor_factory

    class RecordingCursor(psycopg2.extensions.cursor):
        def execute(self, query, vars=None):
            text = self.mogrify(query, vars).decode("utf-8", "replace")
            if not _BOOKKEEPING.match(text):
                sink.append(text.strip())
            return super().execute(query, vars)

        def executemany(self, query, vars_list):
            for params in vars_list:
                self.execute(query, params)

    conn.cursor_factory = RecordingCursor
    try:
        yield
    finally:
        conn.cursor_factory = previous


def try_one(router, name: str) -> DryRunStep:
    """Run module ``name`` in a savepoint of the current transaction, capturing its SQL.

    The caller rolls the whole transaction back; nothing is recorded here.
    """
    source = router.source
    step = DryRunStep(source.name, name)
    if not source.transactional(name):
        step.skipped = "declares TRANSACTIONAL = False: cannot be tried inside a transaction"
        return step
    db = router.database
    up, _ = router.read(name)
    migrator = router.migrator
    try:
        with db.atomic(), capture_sql(db, step.statements):
            up(migrator, db, fake=False)
            migrator()
    except Exception as exc:
        migrator.__ops__ = []
        step.error = db_error(exc)
    return step
