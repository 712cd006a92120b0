"""Applying, inspecting and rolling back migrations.

A *source* is a package of peewee-migrate modules (``NNN_name.py`` with
``migrate`` and ``rollback``) with its own history table. The core's package
is ``convdb.migrations`` (the repository's ``migrations/`` folder) with the
history table ``migratehistory``, the one plain ``pw_migrate`` uses, so both
tools share one history.

Every run holds a PostgreSQL advisory lock for its whole session
(:class:`MigrationDatabase`), so two migrators started at once, any mix of
``pw_migrate migrate`` and ``convdb migrate``, run one after the other and
apply each migration once. Each migration runs in its own transaction: one
that fails is rolled back whole and not recorded, and the lock is released
with the connection.

Library entry points (the CLI is a thin shell over them): :func:`run`,
:func:`status`, :func:`rollback`, :func:`create`.
"""

from __future__ import annotations

import datetime as dt
import importlib.resources
import logging
import re
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import peewee
from peewee_migrate import Router
from peewee_migrate.template import TEMPLATE

from .db import ConvdbDatabase, closing, open_database, resolve_url
from .exceptions import MigrationError

# pg_advisory_lock key shared by every convdb migrator: the first 8 bytes of
# md5("convdb.migrate") as a signed bigint.
MIGRATION_LOCK_KEY = -56033724332835728
LOCK_POLL_SECONDS = 0.25
MODULE_RE = re.compile(r"^(\d{3})_[^.]+\.py$")

log = logging.getLogger("convdb.migrate")
Echo = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


class MigrationDatabase(ConvdbDatabase):
    """A database whose connection holds the migration advisory lock.

    The lock is taken at connect time, before any history is read, with
    try-lock polling (so a waiting migrator can say what it waits for) and
    released when the connection closes, also after a failure.
    """

    def __init__(self, url: str, *, on_wait: Echo = _stderr, **kwargs) -> None:
        super().__init__(url, **kwargs)
        self._on_wait = on_wait

    def _initialize_connection(self, conn) -> None:
        super()._initialize_connection(conn)
        announced = False
        with conn.cursor() as cur:
            while True:
                cur.execute("SELECT pg_try_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
                if cur.fetchone()[0]:
                    return
                if not announced:
                    self._on_wait(
                        f"convdb: waiting for the migration lock on {self.database!r}, "
                        f"held by {_lock_holder(cur)}"
                    )
                    announced = True
                time.sleep(LOCK_POLL_SECONDS)


def _lock_holder(cur) -> str:
    cur.execute(
        """
        SELECT a.pid, a.application_name, a.client_addr
          FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
         WHERE l.locktype = 'advisory' AND l.granted
           AND l.objsubid = 1 AND ((l.classid::bigint << 32) | l.objid::bigint) = %s
        """,
        (MIGRATION_LOCK_KEY,),
    )
    row = cur.fetchone()
    if row is None:
        return "another session"
    pid, app, addr = row
    return f"backend pid {pid} ({app or 'unknown application'}, {addr or 'local socket'})"


@dataclass(frozen=True)
class Source:
    """A named package of migration modules with its own history table."""

    name: str
    package: str
    history_table: str

    @property
    def directory(self) -> Path:
        try:
            files = importlib.resources.files(self.package)
        except ModuleNotFoundError as exc:
            raise MigrationError(
                f"migrations package {self.package!r} of {self.name!r} cannot be imported: {exc}",
                source=self.name,
            ) from None
        return Path(str(files))

    def modules(self) -> list[str]:
        """Module names (``NNN_name``) in order; duplicate numbers are an error."""
        names = sorted(
            p.name[:-3] for p in self.directory.iterdir() if MODULE_RE.match(p.name)
        )
        seen: dict[str, str] = {}
        for name in names:
            number = name[:3]
            if number in seen:
                raise MigrationError(
                    f"{self.name}: migrations {seen[number]} and {name} share the number "
                    f"{number}",
                    source=self.name,
                    hint="Renumber one of them (the later one, if neither is applied yet).",
                )
            seen[number] = name
        return names


CORE = Source(name="core", package="convdb.migrations", history_table="migratehistory")


class SourceRouter(Router):
    """A peewee-migrate router for one source, with a history model of its own.

    peewee-migrate binds every router to one global history model, so two
    routers in one process would write into the same table; each
    SourceRouter builds its own model class instead.
    """

    def __init__(self, database: peewee.Database, source: Source) -> None:
        super().__init__(
            database,
            migrate_dir=source.directory,
            migrate_table=source.history_table,
            logger=log,
        )
        self.source = source

    @cached_property
    def model(self):
        class History(peewee.Model):
            id = peewee.AutoField()
            name = peewee.CharField()
            migrated_at = peewee.DateTimeField(default=lambda: dt.datetime.now(dt.UTC))

            class Meta:
                database = self.database
                table_name = self.migrate_table

        History.create_table(safe=True)
        return History

    @property
    def todo(self) -> list[str]:
        return self.source.modules()


def _db_error(exc: BaseException) -> str:
    """The first line of a database error (or the exception itself)."""
    original = getattr(exc, "orig", None) or exc.__cause__ or exc
    text = getattr(original, "pgerror", None) or str(original) or type(original).__name__
    return text.strip().splitlines()[0].removeprefix("ERROR:").strip()


def _apply(router: SourceRouter, name: str, *, downgrade: bool = False) -> None:
    try:
        router.run_one(name, router.migrator, fake=False, downgrade=downgrade)
    except Exception as exc:
        action = "rollback of" if downgrade else "migration"
        raise MigrationError(
            f"{action} {router.source.name}/{name} failed and was rolled back: {_db_error(exc)}",
            source=router.source.name,
            migration=name,
            hint="Nothing of it was applied or recorded; fix it and run the command again.",
        ) from exc


def _open(url: str | None) -> MigrationDatabase:
    return open_database(url or resolve_url(), db_class=MigrationDatabase)


def run(
    url: str | None = None,
    *,
    sources: Iterable[Source] = (CORE,),
    echo: Echo = print,
) -> list[tuple[str, str]]:
    """Apply every pending migration of ``sources`` in order; return ``(source, name)`` pairs.

    Runs under the migration lock. Stops at the first failure with a
    :class:`MigrationError` (earlier migrations stay applied).
    """
    applied: list[tuple[str, str]] = []
    with closing(_open(url)) as db:
        for source in sources:
            router = SourceRouter(db, source)
            pending = router.diff
            if not pending:
                echo(f"{source.name}: nothing to migrate")
                continue
            for name in pending:
                _apply(router, name)
                applied.append((source.name, name))
                echo(f"{source.name}: applied {name}")
    return applied


@dataclass(frozen=True)
class SourceStatus:
    source: str
    applied: list[tuple[str, dt.datetime]]
    pending: list[str]


def status(url: str | None = None, *, sources: Iterable[Source] = (CORE,)) -> list[SourceStatus]:
    """Applied (with when) and pending migrations per source; writes nothing."""
    result = []
    with closing(open_database(url or resolve_url())) as db:
        for source in sources:
            applied: list[tuple[str, dt.datetime]] = []
            if db.table_exists(source.history_table):
                cursor = db.execute_sql(
                    f'SELECT name, migrated_at FROM "{source.history_table}" ORDER BY id'
                )
                applied = [(name, at) for name, at in cursor.fetchall()]
            done = {name for name, _ in applied}
            pending = [name for name in source.modules() if name not in done]
            result.append(SourceStatus(source.name, applied, pending))
    return result


def rollback(
    url: str | None = None, *, source: Source = CORE, count: int = 1, echo: Echo = print
) -> list[str]:
    """Roll back the last ``count`` applied migrations of ``source``, newest first."""
    if count < 1:
        raise MigrationError("--count must be at least 1", source=source.name)
    undone: list[str] = []
    with closing(_open(url)) as db:
        router = SourceRouter(db, source)
        done = router.done
        if len(done) < count:
            raise MigrationError(
                f"{source.name}: cannot roll back {count} migration(s), "
                f"only {len(done)} applied",
                source=source.name,
            )
        for name in reversed(done[-count:]):
            _apply(router, name, downgrade=True)
            undone.append(name)
            echo(f"{source.name}: rolled back {name}")
    return undone


def create(name: str, *, source: Source = CORE) -> Path:
    """Scaffold ``NNN_name.py`` in the source's package, numbered after the highest one.

    Uses peewee-migrate's own template, so the module is the same as one made
    by ``pw_migrate create``.
    """
    if not re.fullmatch(r"[A-Za-z0-9_]+", name):
        raise MigrationError(
            f"migration name {name!r} may only contain letters, digits and underscores",
            source=source.name,
        )
    directory = source.directory
    numbers = [int(n[:3]) for n in source.modules()]
    number = max(numbers, default=0) + 1
    if number > 999:
        raise MigrationError(f"{source.name}: migration numbers are exhausted (999)")
    filename = f"{number:03d}_{name}.py"
    path = directory / filename
    path.write_text(TEMPLATE.format(migrate="pass", rollback="pass", name=filename))
    return path


def pw_migrate_database(argv: list[str] | None = None) -> peewee.Database:
    """The ``DATABASE`` for ``migrations/conf.py`` when ``pw_migrate`` runs.

    Honours ``--database`` on the command line, then ``DATABASE_URL`` (or
    ``.env``), then the embedded server. Connects at once, so the migration
    lock is held before pw_migrate reads its history, and a bad URL stops
    with a one-paragraph error instead of a traceback. ``pw_migrate create``
    does not need a database: it gets an unconnected one.
    """
    from .config import load_settings
    from .exceptions import ConvdbError

    argv = list(sys.argv if argv is None else argv)
    url = None
    for i, arg in enumerate(argv):
        if arg == "--database" and i + 1 < len(argv):
            url = argv[i + 1]
        elif arg.startswith("--database="):
            url = arg.split("=", 1)[1]
    try:
        if "create" in argv[1:2] and "--auto" not in argv:
            url = url or load_settings().database_url
            return MigrationDatabase(url) if url else peewee.PostgresqlDatabase(None)
        return _open(url)
    except ConvdbError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
