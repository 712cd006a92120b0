"""Migration sources: packages of peewee-migrate modules, their histories and checksums.

A :class:`Source` is one package of ``NNN_name.py`` modules (the core's
``convdb.migrations``, or a plugin's) with its own history table: the core
keeps ``migratehistory`` (the one plain ``pw_migrate`` uses), a plugin
``migratehistory_<name>``. Packages are located with
``importlib.resources``, so a plugin installed from a wheel works as well as
a checkout.

Two declarations are read from a module's text (with :mod:`ast`, never by
running it): ``TRANSACTIONAL = False`` (run it outside a transaction) and
``REPLACES = ["001_a", "002_b"]`` (a squash: it does what those modules
did; :mod:`convdb.migrate.history` decides whether it runs or is recorded).

Checksums live in the history tables themselves, in a nullable ``checksum``
column that convdb adds (``pw_migrate`` ignores it and leaves it empty; convdb
fills it in the next time it migrates). A checksum ignores line endings and
trailing whitespace, so a checkout on Windows or an editor that trims lines
does not count as an edit.

"""

from __future__ import annotations

import ast
import datetime as dt
import hashlib
import importlib.resources
import os
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import peewee
from peewee_migrate import Router

from ..exceptions import MigrationError

# Used with fullmatch: a name with a newline is not a module.
MODULE_RE = re.compile(r"(\d{3})_[^.\n]+\.py")
NAME_RE = re.compile(r"\d{3}_[^.\n/]+")


def new_module_filename(directory: Path, number: int, name: str, *, source: str) -> str:
    """``NNN_name.py`` for a new module in ``directory``; :class:`MigrationError` if unusable.

    The name may hold ASCII letters, digits and underscores only, and the
    file name must fit the file system's limit on one name (255 bytes on
    most), so that scaffolding never ends in a traceback.
    """
    shown = name if len(name) <= 60 else f"{name[:40]}... ({len(name)} characters)"
    if not re.fullmatch(r"[A-Za-z0-9_]+", name):
        raise MigrationError(
            f"migration name {shown!r} may only contain letters, digits and underscores",
            source=source,
        )
    filename = f"{number:03d}_{name}.py"
    try:
        limit = os.pathconf(directory, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    if len(filename.encode()) > limit:
        raise MigrationError(
            f"migration name {shown!r} is too long: file names in {directory} are limited to "
            f"{limit} bytes, so a name may have at most {limit - len('NNN_.py')} characters",
            source=source,
            hint="Choose a shorter name; the docstring of the module is the place for details.",
        )
    return filename


def write_new(path: Path, text: str, source: Source | str) -> None:
    """Create ``path`` with ``text``; never overwrite; :class:`MigrationError` on failure."""
    name = source if isinstance(source, str) else source.name
    try:
        with path.open("x", encoding="utf-8") as f:
            f.write(text)
    except FileExistsError:
        raise MigrationError(
            f"{path} already exists; nothing was written",
            source=name,
            hint="Move or delete it first if it is a leftover.",
        ) from None
    except OSError as exc:
        raise MigrationError(f"cannot write {path}: {exc.strerror}", source=name) from exc


def checksum(text: str) -> str:
    """SHA-256 of ``text`` with line endings unified and trailing whitespace dropped."""
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    lines = [line.rstrip() for line in text.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _top_level(tree: ast.Module, name: str) -> ast.expr | None:
    """The value last assigned to ``name`` at a module's top level, if any."""
    value = None
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets = [node.target]
        else:
            continue
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            value = node.value
    return value


def _parse(text: str) -> ast.Module | None:
    try:
        return ast.parse(text)
    except SyntaxError:
        return None  # running it will report the error properly


def declares_non_transactional(text: str) -> bool:
    """Whether a module sets ``TRANSACTIONAL = False`` at top level (read, not executed)."""
    tree = _parse(text)
    value = None if tree is None else _top_level(tree, "TRANSACTIONAL")
    return isinstance(value, ast.Constant) and value.value is False


def declared_replaces(text: str, module: str = "this module") -> list[str] | None:
    """The names a module lists in ``REPLACES`` at top level, or ``None`` without one.

    ``REPLACES`` must be a list or tuple of module names (``NNN_name``) written
    literally, each once, not the module's own name; anything else is a
    :class:`MigrationError` naming the module.
    """
    tree = _parse(text)
    value = None if tree is None else _top_level(tree, "REPLACES")
    if value is None:
        return None
    items = value.elts if isinstance(value, ast.List | ast.Tuple) else None
    names = [
        item.value
        for item in items or []
        if isinstance(item, ast.Constant) and isinstance(item.value, str)
    ]
    if items is None or len(names) != len(items) or not names:
        problem = "must be a non-empty list of module names written literally"
    elif bad := [n for n in names if not NAME_RE.fullmatch(n)]:
        problem = f"names {bad[0]!r}, which is not a module name (NNN_name)"
    elif len(set(names)) != len(names):
        problem = "names a module twice"
    elif module in names:
        problem = "names the module itself"
    else:
        return names
    raise MigrationError(
        f"REPLACES in {module} {problem}",
        migration=None if module == "this module" else module,
        hint='Write it as REPLACES = ["001_first", "002_second", ...].',
    )


@dataclass(frozen=True)
class Source:
    """A named package of migration modules with its own history table."""

    name: str
    package: str
    history_table: str
    # A folder read instead of the package's (``pw_migrate --directory``).
    folder: Path | None = None

    @property
    def directory(self) -> Path:
        if self.folder is not None:
            return self.folder
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
        """Module names (``NNN_name``) in order.

        Two modules may share a number only when one of them replaces the
        other (a squash named after the first module it replaces, beside
        that module until its file is deleted); any other duplicate is an
        error.
        """
        names = sorted(p.name[:-3] for p in self.directory.iterdir() if MODULE_RE.fullmatch(p.name))
        seen: dict[str, str] = {}
        for name in names:
            number = name[:3]
            other = seen.get(number)
            if other is not None and not self._one_replaces_other(other, name):
                raise MigrationError(
                    f"{self.name}: migrations {other} and {name} share the number "
                    f"{number} (in {self.directory})",
                    source=self.name,
                    hint="Renumber one of them (the later one, if neither is applied yet).",
                )
            seen[number] = name
        return names

    def _one_replaces_other(self, a: str, b: str) -> bool:
        return b in (self.replaces(a) or ()) or a in (self.replaces(b) or ())

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

    def replaces(self, name: str) -> list[str] | None:
        """What module ``name`` declares in ``REPLACES``; ``None`` for an ordinary one."""
        text = self.text(name)
        if text is None:
            return None
        try:
            return declared_replaces(text, name)
        except MigrationError as exc:
            exc.source = self.name
            raise

    def squashes(self) -> dict[str, list[str]]:
        """Every module on disk that declares ``REPLACES``, in order, with what it replaces."""
        found = {}
        for name in self.modules():
            replaced = self.replaces(name)
            if replaced is not None:
                found[name] = replaced
        return found


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

    @cached_property
    def migrator(self):
        """peewee-migrate's migrator, after a fake replay of the applied modules on disk.

        The replay rebuilds the migrator's model state (``create_model`` and
        friends). A history row without a file is one a squash accounts for
        (the squash's own replay stands for it) or an error :func:`convdb.
        migrate.history.problems` reports before anything runs; it is skipped
        here instead of failing the read.
        """
        migrator = self.migrator_class(self.database)
        for name in self.done:
            if self.source.text(name) is not None:
                self.run_one(name, migrator)
        return migrator
