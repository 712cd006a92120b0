"""Applying, inspecting and rolling back migrations: the core's and every plugin's.

Each installed plugin (:mod:`convdb.plugins`, the core included as ``core``)
with a migrations package is one :class:`Source` with its own history table
(:mod:`convdb.migrate.sources`). :func:`run` applies ``core`` first, then
every plugin in dependency order.

Before anything is applied, every source involved is checked: an applied
module edited since (its checksum differs), an applied module whose file is
gone, two modules with one number, a pending module numbered below one
already applied, or (for ``plugin=``) a dependency with pending migrations.
Any of these stops the run with a :class:`MigrationError` naming the files.
An edit is accepted explicitly with ``accept=["source/NNN_name"]``.

Locking: every run holds the migration advisory lock for its whole session
(:mod:`convdb.migrate.lock`), so concurrent migrators, ``pw_migrate``
included, run one after the other; a failed run releases it with its
connection.

Transactions: each module runs in its own transaction (a failure leaves
nothing of it, and it is not recorded), unless it declares
``TRANSACTIONAL = False`` at top level: then its statements run one by one in
autocommit (for ``CREATE INDEX CONCURRENTLY``), and it is recorded afterwards.

Library entry points (the CLI is a thin shell over them): :func:`run`,
:func:`dry_run`, :func:`status`, :func:`rollback`, :func:`create`.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from peewee_migrate.template import TEMPLATE

from .. import plugins as plugins_lib
from ..db import closing, open_database, resolve_url
from ..exceptions import MigrationError, PluginError
from .lock import MIGRATION_LOCK_KEY, MigrationDatabase
from .sources import (
    CORE,
    MODULE_RE,
    Source,
    SourceRouter,
    SourceState,
    inspect,
    read_history,
)
from .steps import DryRun, DryRunStep, apply_one, try_one

log = logging.getLogger("convdb.migrate")
Echo = Callable[[str], None]


def _open(url: str | None) -> MigrationDatabase:
    return open_database(url or resolve_url(), db_class=MigrationDatabase)


def _apply(router: SourceRouter, name: str, *, downgrade: bool = False) -> None:
    apply_one(router, name, downgrade=downgrade)


def source_of(found: plugins_lib.Found) -> Source:
    """The migration source of an installed plugin (it must have migrations)."""
    plugin = found.plugin
    if plugin.name == plugins_lib.CORE_NAME and plugin.migrations == CORE.package:
        return CORE
    return Source(plugin.name, plugin.migrations, plugin.history_table)


def _installed_sources() -> tuple[list[plugins_lib.Found], list[Source]]:
    found = plugins_lib.ordered_plugins()
    return found, [source_of(f) for f in found if f.plugin.migrations]


def _find(found: Sequence[plugins_lib.Found], name: str) -> plugins_lib.Found:
    for f in found:
        if f.name == name:
            return f
    raise PluginError(
        f"no installed plugin is named {name!r}; installed: " + ", ".join(f.name for f in found),
        plugin=name,
        hint="`convdb plugins` lists what is installed and why something is not.",
    )


def plan(plugin: str | None = None) -> tuple[list[Source], list[Source]]:
    """``(sources to migrate, sources that must already be fully migrated)``.

    Without ``plugin``: every installed source in order, nothing required.
    With it: that plugin's source, and the sources of everything it depends
    on (directly or not, ``core`` included). Raises :class:`PluginError`
    for a broken plugin set before any database is touched.
    """
    found, sources = _installed_sources()
    if plugin is None:
        return sources, []
    target = _find(found, plugin)
    if not target.plugin.migrations:
        raise PluginError(f"plugin {plugin!r} has no migrations", plugin=plugin)
    needed: set[str] = set()
    frontier = set(plugins_lib.dependencies(target))
    while frontier:
        needed |= frontier
        frontier = {
            d for f in found if f.name in frontier for d in plugins_lib.dependencies(f)
        } - needed
    by_name = {s.name: s for s in sources}
    required = [by_name[f.name] for f in found if f.name in needed and f.name in by_name]
    return [by_name[plugin]], required


def _sources(sources: Iterable[Source] | None, plugin: str | None):
    if sources is None:
        try:
            return plan(plugin)
        except PluginError as exc:
            raise PluginError(
                f"{exc.message}; nothing was done", plugin=exc.plugin, hint=exc.hint
            ) from None
    sources = list(sources)
    if plugin is not None:
        sources = [s for s in sources if s.name == plugin]
    return sources, []


def _check(states: Sequence[SourceState], required: int, accept: Iterable[str]) -> set[str]:
    """Raise :class:`MigrationError` listing every reason not to migrate; return accepted keys."""
    accept = set(accept)
    problems: list[str] = []
    hints: list[str] = []
    changed_keys = set()
    for index, state in enumerate(states):
        src = state.source
        for name in state.changed:
            key = f"{src.name}/{name}"
            changed_keys.add(key)
            if key not in accept:
                problems.append(
                    f"{key} was edited after it was applied: {src.path(name)} no longer "
                    "matches the checksum recorded when it ran"
                )
                hints.append(
                    f"Restore {src.path(name).name} and put the change in a new migration "
                    "(convdb create NAME); if the edit changes nothing in the database, accept "
                    f"it: convdb migrate --accept-checksum {key}"
                )
        for name in state.missing:
            problems.append(f"{src.name}/{name} is applied but {src.path(name)} is gone")
            hints.append("Restore the file: applied modules are replayed to rebuild state.")
        for name, top in state.out_of_order.items():
            problems.append(
                f"{src.name}/{name} is pending but {src.name}/{top}, numbered higher, is "
                "already applied"
            )
            hints.append(
                f"Renumber {name}.py after {top[:3]} (out-of-order modules are never applied)."
            )
        if index < required and state.pending:
            problems.append(
                f"{src.name} has {len(state.pending)} pending migration(s) "
                f"({', '.join(state.pending)}) and is needed first"
            )
            hints.append("Run `convdb migrate` (everything, in order) instead.")
    unknown = sorted(accept - changed_keys)
    if unknown:
        problems.append(f"nothing to accept for {', '.join(unknown)}: not an edited migration")
        hints.append("Give --accept-checksum SOURCE/NNN_name as `convdb status` shows it.")
    if problems:
        raise MigrationError(
            "refusing to migrate; nothing was applied:\n" + "\n".join(f"  - {p}" for p in problems),
            source=states[0].source.name if states else None,
            hint="\n      ".join(dict.fromkeys(hints)),
        )
    return accept


def _record_checksums(db, state: SourceState, accepted: set[str], echo: Echo) -> None:
    names = state.unrecorded + [n for n in state.changed if f"{state.source.name}/{n}" in accepted]
    if not names:
        return
    history = SourceRouter(db, state.source).model
    with db.atomic():
        for name in names:
            history.update(checksum=state.current[name]).where(history.name == name).execute()
    for name in names:
        verb = "accepted the new checksum of" if name in state.changed else "recorded checksum of"
        echo(f"{state.source.name}: {verb} {name}")


def run(
    url: str | None = None,
    *,
    sources: Iterable[Source] | None = None,
    plugin: str | None = None,
    accept: Iterable[str] = (),
    echo: Echo = print,
) -> list[tuple[str, str]]:
    """Apply every pending migration in order; return the ``(source, name)`` pairs applied.

    ``sources`` defaults to every installed plugin's (core first); ``plugin``
    narrows it to one, whose dependencies must be fully migrated. Checks
    everything first (see the module docstring), records missing checksums,
    then applies. Stops at the first failure with a :class:`MigrationError`
    (earlier migrations stay applied).
    """
    targets, required = _sources(sources, plugin)
    applied: list[tuple[str, str]] = []
    with closing(_open(url)) as db:
        states = [inspect(db, s) for s in [*required, *targets]]
        accepted = _check(states, len(required), accept)
        for state in states:
            _record_checksums(db, state, accepted, echo)
        for state in states[len(required) :]:
            if not state.pending:
                echo(f"{state.source.name}: nothing to migrate")
                continue
            router = SourceRouter(db, state.source)
            for name in state.pending:
                _apply(router, name)
                applied.append((state.source.name, name))
                echo(f"{state.source.name}: applied {name}")
    return applied


def dry_run(
    url: str | None = None,
    *,
    sources: Iterable[Source] | None = None,
    plugin: str | None = None,
    accept: Iterable[str] = (),
) -> DryRun:
    """Try every pending migration in one transaction that is rolled back.

    Returns each step with the SQL it executed, and the first failure; stops
    there. Non-transactional modules cannot be tried inside a transaction:
    they are listed as skipped. Nothing is recorded.
    """
    targets, required = _sources(sources, plugin)
    result = DryRun()
    with closing(_open(url)) as db:
        states = [inspect(db, s) for s in [*required, *targets]]
        _check(states, len(required), accept)
        pending = [(s.source, n) for s in states[len(required) :] for n in s.pending]
        if not pending:
            return result

        class _Undo(Exception):
            pass

        try:
            with db.atomic():
                routers = {s.name: SourceRouter(db, s) for s, _ in pending}
                for source, name in pending:
                    step = try_one(routers[source.name], name)
                    result.steps.append(step)
                    if step.error:
                        break
                raise _Undo
        except _Undo:
            pass
    return result


@dataclass(frozen=True)
class SourceStatus:
    """One source as :func:`status` sees it; ``installed=False`` for leftover history."""

    source: str
    applied: list[tuple[str, dt.datetime | None]]
    pending: list[str]
    changed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unrecorded: list[str] = field(default_factory=list)
    out_of_order: dict[str, str] = field(default_factory=dict)
    installed: bool = True
    history_table: str = ""


def status(
    url: str | None = None,
    *,
    sources: Iterable[Source] | None = None,
    plugin: str | None = None,
) -> list[SourceStatus]:
    """Per source: applied (with when), pending, changed, missing; writes nothing.

    With the default sources, history tables (``migratehistory_*``) of
    plugins that are no longer installed are listed too, as not installed.
    """
    targets, _ = _sources(sources, plugin)
    result = []
    with closing(open_database(url or resolve_url())) as db:
        for source in targets:
            st = inspect(db, source)
            result.append(
                SourceStatus(
                    source.name,
                    st.applied,
                    st.pending,
                    st.changed,
                    st.missing,
                    st.unrecorded,
                    st.out_of_order,
                    history_table=source.history_table,
                )
            )
        if sources is None and plugin is None:
            known = {s.history_table for s in targets}
            for table in sorted(db.get_tables()):
                if table.startswith("migratehistory_") and table not in known:
                    rows = read_history(db, table)
                    result.append(
                        SourceStatus(
                            table.removeprefix("migratehistory_"),
                            [(r.name, r.migrated_at) for r in rows],
                            [],
                            installed=False,
                            history_table=table,
                        )
                    )
    return result


def rollback(
    url: str | None = None,
    *,
    source: Source | None = None,
    plugin: str | None = None,
    count: int = 1,
    force: bool = False,
    echo: Echo = print,
) -> list[str]:
    """Roll back the last ``count`` applied migrations of one source, newest first.

    The source is ``source``, else the installed plugin ``plugin``, else the
    core. Refuses while an installed plugin that depends on it has applied
    migrations, unless ``force``.
    """
    if count < 1:
        raise MigrationError("--count must be at least 1", source=plugin or "core")
    found = plugins_lib.discover()
    if source is None:
        name = plugin or plugins_lib.CORE_NAME
        target = _find(found, name)
        if not target.plugin.migrations:
            raise PluginError(f"plugin {name!r} has no migrations", plugin=name)
        source = source_of(target)
    undone: list[str] = []
    with closing(_open(url)) as db:
        if not force:
            blocking = []
            for dependent in plugins_lib.dependents(found, source.name):
                f = _find(found, dependent)
                if f.plugin.migrations and read_history(db, f.plugin.history_table):
                    blocking.append(dependent)
            if blocking:
                raise MigrationError(
                    f"refusing to roll back {source.name}: "
                    + ", ".join(repr(b) for b in blocking)
                    + " depend(s) on it and have applied migrations",
                    source=source.name,
                    hint="Roll those back first (convdb rollback --plugin NAME), or pass "
                    "--force if you know their tables do not need what you remove.",
                )
        router = SourceRouter(db, source)
        done = router.done
        if len(done) < count:
            raise MigrationError(
                f"{source.name}: cannot roll back {count} migration(s), only {len(done)} applied",
                source=source.name,
            )
        for name in reversed(done[-count:]):
            if source.text(name) is None:
                raise MigrationError(
                    f"{source.name}/{name} cannot be rolled back: {source.path(name)} is gone",
                    source=source.name,
                    migration=name,
                    hint="Restore the file.",
                )
            _apply(router, name, downgrade=True)
            undone.append(name)
            echo(f"{source.name}: rolled back {name}")
    return undone


def create(name: str, *, source: Source | None = None, plugin: str | None = None) -> Path:
    """Scaffold ``NNN_name.py`` in a source's package, numbered after the highest one.

    The source is ``source``, else the installed plugin ``plugin``, else the
    core. Uses peewee-migrate's own template, so the module is the same as
    one made by ``pw_migrate create``.
    """
    if source is None:
        if plugin is None:
            source = CORE
        else:
            found = _find(plugins_lib.discover(), plugin)
            if not found.plugin.migrations:
                raise PluginError(f"plugin {plugin!r} has no migrations package", plugin=plugin)
            source = source_of(found)
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


__all__ = [
    "CORE",
    "MIGRATION_LOCK_KEY",
    "MODULE_RE",
    "DryRun",
    "DryRunStep",
    "MigrationDatabase",
    "Source",
    "SourceRouter",
    "SourceStatus",
    "create",
    "dry_run",
    "plan",
    "rollback",
    "run",
    "source_of",
    "status",
]
