"""Squashing a source's history: one module that stands for many (``convdb squash``).

:func:`squash` writes ``NNN_squashed_MMM.py`` into a source's migrations
package. It replaces the modules from the first one not yet squashed up to
``MMM``: it declares them in ``REPLACES`` (:mod:`convdb.migrate.history`
records it as applied where they all ran, and runs it instead of them where
none did), and its ``migrate``/``rollback`` run their code in order.

Their code is carried verbatim, as a string per module, and executed each in
a namespace of its own, as Django's ``squashmigrations`` keeps ``RunSQL``
as written: the squash does exactly what the modules did, and needs none of
their files (peewee-migrate runs a module without ``__file__``, so importing
the old files is not an option). After each module, its queued operations
run before the next module starts, as when they ran one by one; all of it in
the squash's one transaction.

It refuses a range that holds a module declaring ``TRANSACTIONAL = False``
(it cannot share a transaction), a number that is not there, a range of
fewer than two modules, and an existing file. The module is numbered like
the first module it replaces (two modules may share a number when one
replaces the other), so it sorts where they did.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from ..exceptions import MigrationError
from .order import one_source
from .sources import Source, write_new

_HEADER = '''\
"""Squash of {first} ... {last} ({count} modules), written by `convdb squash`.

A database that applied all of them records this module as applied without
running it; a fresh database runs only this module. Its migrate() runs the
code of each replaced module below, verbatim and in order, each in a
namespace of its own; rollback() runs their rollbacks in reverse. Once every
database has applied them, delete the replaced files and keep this one.
"""

REPLACES = [
{replaces}]
'''

_FOOTER = '''

MODULES = [
{modules}]


def _load(name, code):
    """Execute one replaced module's code in a fresh namespace, as peewee-migrate does."""
    scope = {{"__name__": name}}
    exec(compile(code, f"{{name}}.py", "exec", dont_inherit=True), scope)
    return scope


def _void(migrator, database, *, fake=False):
    pass


def migrate(migrator, database, *, fake=False):
    for name, code in MODULES:
        _load(name, code).get("migrate", _void)(migrator, database, fake=fake)
        if not fake:
            migrator()  # this module's operations before the next module's


def rollback(migrator, database, *, fake=False):
    for name, code in reversed(MODULES):
        _load(name, code).get("rollback", _void)(migrator, database, fake=fake)
        if not fake:
            migrator()
'''


def literal(text: str) -> str:
    """A Python expression for ``text`` that shows it line for line.

    A raw triple-quoted string that opens with a newline dropped by ``[1:]``,
    so the text starts at column 0; ``repr`` when no raw string can hold it.
    """
    for quote in ('"""', "'''"):
        if quote not in text and not text.endswith((quote[0], "\\")):
            expression = f"r{quote}\n{text}{quote}[1:]"
            if ast.literal_eval(expression.removesuffix("[1:]"))[1:] == text:
                return expression
    return repr(text)


@dataclass(frozen=True)
class Squashed:
    """What :func:`squash` wrote."""

    path: Path
    replaces: list[str]
    source: str


def _range(source: Source, upto: str) -> list[str]:
    names = source.modules()
    squashes = source.squashes()
    settled = {n for s, replaced in squashes.items() for n in (s, *replaced)}
    start = max((i + 1 for i, n in enumerate(names) if n in settled), default=0)
    matches = [n for n in names if upto in (n, n[:3])]
    if not matches:
        raise MigrationError(
            f"{source.name}: no migration {upto!r} to squash up to (give its number, NNN, "
            f"or its name, NNN_name); modules: {names[0] if names else '-'} ... "
            f"{names[-1] if names else '-'}",
            source=source.name,
        )
    if len(matches) > 1:
        raise MigrationError(
            f"{source.name}: {upto!r} names {' and '.join(matches)}; give the full name",
            source=source.name,
        )
    end = names.index(matches[0]) + 1
    chosen = names[start:end]
    if len(chosen) < 2:
        done = f"{names[start - 1]} is the last squashed module" if start else "nothing before"
        raise MigrationError(
            f"{source.name}: nothing to squash up to {matches[0]}: "
            f"{len(chosen)} module(s) not yet squashed ({done})",
            source=source.name,
            hint="A squash replaces at least two modules, starting after the last squash.",
        )
    for name in chosen:
        if not source.transactional(name):
            raise MigrationError(
                f"{source.name}/{name} declares TRANSACTIONAL = False: it cannot run inside "
                "the one transaction of a squash",
                source=source.name,
                migration=name,
                hint="Squash up to the module before it.",
            )
    return chosen


def squash(upto: str, *, source: Source | None = None, plugin: str | None = None) -> Squashed:
    """Write the squash of ``source`` (or plugin ``plugin``'s, or the core's) up to ``upto``.

    ``upto`` is a module's number (``NNN``) or name. Returns the path written
    and the modules it replaces; raises :class:`MigrationError` (and writes
    nothing) for the cases in the module docstring.
    """
    source = one_source(source, plugin)
    chosen = _range(source, upto)
    first, last = chosen[0], chosen[-1]
    path = source.directory / f"{first[:3]}_squashed_{last[:3]}.py"
    parts = [
        _HEADER.format(
            first=first,
            last=last,
            count=len(chosen),
            replaces="".join(f'    "{name}",\n' for name in chosen),
        )
    ]
    for name in chosen:
        text = source.text(name) or ""
        parts.append(f"\n# {name}.py, verbatim\n_{name[:3]} = {literal(text)}\n")
    modules = "".join(f'    ("{name}", _{name[:3]}),\n' for name in chosen)
    parts.append(_FOOTER.format(modules=modules))
    write_new(path, "".join(parts), source)
    return Squashed(path, chosen, source.name)
