"""The bridge for plain ``pw_migrate``: what ``migrations/conf.py`` hands it.

``pw_migrate`` executes ``migrations/conf.py``, which sets ``DATABASE =
pw_migrate_database()``: a connection that already holds convdb's migration
lock, opened from ``--database``, ``DATABASE_URL``/``.env`` or the embedded
server, with a one-paragraph error instead of a traceback.

Squashes: peewee-migrate knows nothing of ``REPLACES`` and replays every
history row by reading its file. So, before ``pw_migrate`` reads the
history, the bridge records the squashes whose replaced modules are all
applied (moving the replaced rows out of the history table, as ``convdb
migrate`` does: :func:`convdb.migrate.history.record_squashes`), and hides
replaced modules still on disk from ``pw_migrate`` (they never run on their
own). A squash only partly applied needs its missing modules run first:
``pw_migrate`` stops and says to run ``convdb migrate``.

``pw_migrate create`` is patched to number a new module after the highest
one and to refuse a name convdb would refuse (characters, length).

Non-transactional modules: peewee-migrate wraps every module in a
transaction, where ``CREATE INDEX CONCURRENTLY`` cannot run. A module that
declares ``TRANSACTIONAL = False`` is run the way ``convdb migrate`` runs it
instead: statement by statement in autocommit, then recorded in a short
transaction of its own.
"""

from __future__ import annotations

import sys
from pathlib import Path

import peewee

from ..exceptions import ConvdbError, MigrationError
from .history import inspect, listed, record_squashes
from .lock import MigrationDatabase, open_locked
from .sources import CORE, Source, declares_non_transactional, new_module_filename
from .steps import run_operations


def _patch_router() -> None:
    """Number ``create``'s modules after the highest, check names, hide replaced modules.

    peewee-migrate numbers by *counting* files, so a folder with a gap (001,
    002, 004) gets a second 004. ``convdb create`` and this patched
    ``pw_migrate create`` both use the highest number plus one.
    """
    from peewee_migrate.router import Router

    if getattr(Router.compile, "_convdb", False):
        return
    original_compile = Router.compile
    original_todo = Router.todo
    original_run_one = Router.run_one

    def compile(self, name, migrate="", rollback="", num=None):
        if num is None:
            num = max((int(n[:3]) for n in self.todo), default=0)
        try:
            new_module_filename(Path(self.migrate_dir), num + 1, name, source="core")
        except ConvdbError as exc:
            _fail(exc)
        return original_compile(self, name, migrate, rollback, num)

    def todo(self):
        names = original_todo.fget(self)
        replaced = {n for r in _folder_source(self.migrate_dir).squashes().values() for n in r}
        return [name for name in names if name not in replaced]

    def run_one(self, name, migrator, *, fake=True, downgrade=False, force=False):
        path = Path(self.migrate_dir) / f"{name}.py"
        if fake or not path.is_file() or not declares_non_transactional(path.read_text()):
            return original_run_one(
                self, name, migrator, fake=fake, downgrade=downgrade, force=force
            )
        up, down = self.read(name)
        self.logger.info(
            '%s "%s" (non-transactional)', "Roll back" if downgrade else "Migrate", name
        )
        try:
            (down if downgrade else up)(migrator, self.database, fake=False)
            run_operations(migrator)
        except BaseException:
            migrator.__ops__ = []
            raise
        with self.database.atomic():
            if downgrade:
                self.model.delete().where(self.model.name == name).execute()
            else:
                self.model.create(name=name)
        return name

    compile._convdb = True
    Router.compile = compile
    Router.todo = property(todo)
    Router.run_one = run_one


def _fail(exc: ConvdbError, url: str | None = None):
    from ..dburl import redact

    print(redact(f"Error: {exc}", url), file=sys.stderr)
    raise SystemExit(1) from None


def _option(argv: list[str], name: str, default: str | None) -> str | None:
    value = default
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(f"{name}="):
            value = arg.split("=", 1)[1]
    return value


def _folder_source(directory, table: str = CORE.history_table) -> Source:
    return Source(CORE.name, CORE.package, table, folder=Path(directory))


def settle_squashes(db: peewee.Database, source: Source) -> list[str]:
    """Record the squashes ``source`` can record; refuse a partly applied one.

    What the bridge does before ``pw_migrate`` reads the history; returns
    the squashes recorded.
    """
    plan = inspect(db, source).plan
    for squash, gone in plan.unavailable.items():
        raise MigrationError(
            f"{source.name}/{squash} cannot be recorded: it replaces modules of which "
            f"{listed(gone)} are neither applied nor on disk",
            source=source.name,
            hint="Run `convdb migrate` for the details and what to do.",
        )
    if plan.first:
        raise MigrationError(
            f"{source.name}: {listed(plan.record)} replace(s) modules of which some are applied "
            f"and {listed(plan.first)} are not; pw_migrate cannot run those first",
            source=source.name,
            hint="Run `convdb migrate`: it runs them, then records the squash.",
        )
    return record_squashes(db, source, lambda line: print(f"convdb: {line}", file=sys.stderr))


def pw_migrate_database(argv: list[str] | None = None) -> peewee.Database:
    """The ``DATABASE`` for ``migrations/conf.py`` when ``pw_migrate`` runs.

    Honours ``--database`` on the command line, then ``DATABASE_URL`` (or
    ``.env``), then the embedded server. Checks every setting first, and
    connects at once, so the migration lock is held before pw_migrate reads
    its history; a bad setting or URL stops with a one-paragraph error (no
    password, whatever the URL's form) instead of a traceback. Then settles
    the squashes of the folder pw_migrate works on (``--directory``, history
    table ``--migratetable``). ``pw_migrate create`` does not need a
    database: it gets an unconnected one.
    """
    from ..config import load_settings
    from ..dburl import redact_log_records

    argv = list(sys.argv if argv is None else argv)
    url = _option(argv, "--database", None)
    _patch_router()
    redact_log_records()
    try:
        settings = load_settings()
        if "create" in argv[1:2] and "--auto" not in argv:
            url = url or settings.database_url
            return MigrationDatabase(url) if url else peewee.PostgresqlDatabase(None)
        db = open_locked(url)
        source = _folder_source(
            _option(argv, "--directory", "migrations"),
            _option(argv, "--migratetable", CORE.history_table),
        )
        try:
            settle_squashes(db, source)
        except BaseException:
            db.close()
            raise
        return db
    except ConvdbError as exc:
        _fail(exc, url)
