"""Migration sources: packages of peewee-migrate modules, their histories and checksums.

A :class:`Source` is one package of ``NNN_name.py`` modules (the core's
``convdb.migrations``, or a plugin's) with its own history table: the core
keeps ``migratehistory`` (the one plain ``pw_migrate`` uses), a plugin
``migratehistory_<name>``. Packages are located with
``importlib.resources``, so a plugin installed from a wheel works as well as
a checkout.

Checksums live in the history tables themselves, in a nullable ``checksum``
column that convdb adds (``pw_migrate`` ignores it and leaves it empty; convdb
fills it in the next time it migrates). A checksum ignores line endings and
trailing whitespace, so a checkout on Windows or an editor that trims lines
does not count as an edit.

:func:`inspect` reads a source's state without writing anything: applied
(with when), pending, changed since applied, applied but missing on disk,
and pending modules numbered below one already applied.
"""

from __future__ import annotations

import ast
import datetime as dt
import hashlib
import importlib.resources
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import peewee
from peewee_migrate import Router

from ..exceptions import MigrationError

MODULE_RE = re.compile(r"^(\d{3})_[^.]+\.py$")


def checksum(text: str) -> str:
    """SHA-256 of ``text`` with line endings unified and trailing whitespace dropped."""
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    lines = [line.rstrip() for line in text.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def declares_non_transactional(text: str) -> bool:
    """Whether a module sets ``TRANSACTIONAL = False`` at top level (read, not executed)."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return False  # running it will report the error properly
    for node in tree.body:
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AnnAssign)
            else []
        )
        if any(isinstance(t, ast.Name) and t.id == "TRANSACTIONAL" for t in targets):
            value = node.value
            return isinstance(value, ast.Constant) and value.value is False
    return False


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
        path = Path(str(files))
        if not path.is_dir():
            raise MigrationError(
                f"migrations package {self.package!r} of {self.name!r} is not a folder on disk "
                f"({files!r}); peewee-migrate reads modules from files",
                source=self.name,
                hint="Install the plugin unzipped (pip installs wheels unzipped by default).",
            )
        return path

    def modules(self) -> list[str]:
        """Module names (``NNN_name``) in order; duplicate numbers are an error."""
        names = sorted(p.name[:-3] for p in self.directory.iterdir() if MODULE_RE.match(p.name))
        seen: dict[str, str] = {}
        for name in names:
            number = name[:3]
            if number in seen:
                raise MigrationError(
                    f"{self.name}: migrations {seen[number]} and {name} share the number "
                    f"{number} (in {self.directory})",
                    source=self.name,
                    hint="Renumber one of them (the later one, if neither is applied yet).",
                )
            seen[number] = name
        return names

    def path(self, name: str) -> Path:
        return self.directory / f"{name}.py"

    def text(self, name: str) -> str | None:
        try:
            return self.path(name).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def checksum(self, name: str) -> str | None:
        text = self.text(name)
        return None if text is None else checksum(text)

    def transactional(self, name: str) -> bool:
        text = self.text(name)
        return text is None or not declares_non_transactional(text)


CORE = Source(name="core", package="convdb.migrations", history_table="migratehistory")


class SourceRouter(Router):
    """A peewee-migrate router for one source, with a history model of its own.

    peewee-migrate binds every router to one global history model, so two
    routers in one process would write into the same table; each
    SourceRouter builds its own model class instead, with the ``checksum``
    column convdb adds.
    """

    def __init__(self, database: peewee.Database, source: Source) -> None:
        import logging

        super().__init__(
            database,
            migrate_dir=source.directory,
            migrate_table=source.history_table,
            logger=logging.getLogger("convdb.migrate"),
        )
        self.source = source

    @cached_property
    def model(self):
        class History(peewee.Model):
            id = peewee.AutoField()
            name = peewee.CharField()
            migrated_at = peewee.DateTimeField(default=lambda: dt.datetime.now(dt.UTC))
            checksum = peewee.TextField(null=True)

            class Meta:
                database = self.database
                table_name = self.migrate_table

        History.create_table(safe=True)
        # a table made by plain pw_migrate has no checksum column yet
        table = self.migrate_table
        if "checksum" not in {c.name for c in self.database.get_columns(table)}:
            self.database.execute_sql(f'ALTER TABLE "{table}" ADD COLUMN checksum TEXT')
        return History

    @property
    def todo(self) -> list[str]:
        return self.source.modules()


@dataclass(frozen=True)
class HistoryRow:
    name: str
    migrated_at: dt.datetime | None
    checksum: str | None


def read_history(db: peewee.Database, table: str) -> list[HistoryRow]:
    """Rows of a history table in order, or ``[]`` if it does not exist; writes nothing."""
    if not db.table_exists(table):
        return []
    columns = {c.name for c in db.get_columns(table)}
    checksum_sql = "checksum" if "checksum" in columns else "NULL"
    cursor = db.execute_sql(f'SELECT name, migrated_at, {checksum_sql} FROM "{table}" ORDER BY id')
    return [HistoryRow(*row) for row in cursor.fetchall()]


def _number(name: str) -> int | None:
    return int(name[:3]) if name[:3].isdigit() else None


@dataclass
class SourceState:
    """What :func:`inspect` found for one source."""

    source: Source
    files: list[str]
    history: list[HistoryRow]
    current: dict[str, str] = field(default_factory=dict)

    @property
    def applied(self) -> list[tuple[str, dt.datetime | None]]:
        return [(row.name, row.migrated_at) for row in self.history]

    @property
    def pending(self) -> list[str]:
        done = {row.name for row in self.history}
        return [name for name in self.files if name not in done]

    @property
    def changed(self) -> list[str]:
        return [
            row.name
            for row in self.history
            if row.checksum and row.name in self.current and self.current[row.name] != row.checksum
        ]

    @property
    def missing(self) -> list[str]:
        return [row.name for row in self.history if row.name not in self.current]

    @property
    def unrecorded(self) -> list[str]:
        return [row.name for row in self.history if not row.checksum and row.name in self.current]

    @property
    def out_of_order(self) -> dict[str, str]:
        """Pending module -> the highest-numbered applied one it would run after."""
        numbered = [(n, row.name) for row in self.history if (n := _number(row.name)) is not None]
        if not numbered:
            return {}
        top_number, top_name = max(numbered)
        return {
            name: top_name
            for name in self.pending
            if (n := _number(name)) is not None and n < top_number
        }


def inspect(db: peewee.Database, source: Source) -> SourceState:
    """The state of ``source`` in ``db``; reads only."""
    files = source.modules()
    state = SourceState(source, files, read_history(db, source.history_table))
    for name in {*files, *(row.name for row in state.history)}:
        digest = source.checksum(name)
        if digest is not None:
            state.current[name] = digest
    return state
