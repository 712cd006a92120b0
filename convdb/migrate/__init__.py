"""Applying, inspecting and rolling back migrations: the core's and every plugin's.

Each installed plugin (:mod:`convdb.plugins`, the core included as ``core``)
with a migrations package is one :class:`Source` with its own history table
(:mod:`convdb.migrate.sources`). :func:`run` applies ``core`` first, then
every plugin in dependency order (:mod:`convdb.migrate.order`).

Before anything is applied, every source involved is checked
(:func:`convdb.migrate.history.check`): an applied module edited since (its
checksum differs), an applied module whose file is gone, two modules with
one number, a pending module numbered below one already applied, a squash
that cannot be recorded, or (for ``plugin=``) a dependency with pending
migrations. Any of these stops the run with a :class:`MigrationError`
naming the files. An edit is accepted explicitly with
``accept=["source/NNN_name"]``.

Squashes: a module declaring ``REPLACES = [...]`` is recorded as applied
without running where the modules it replaces ran, and runs instead of them
where none did (:mod:`convdb.migrate.history`; :func:`convdb.migrate.squash.
squash` writes one).

Locking: every run holds the migration advisory lock for its whole session
(:mod:`convdb.migrate.lock`), so concurrent migrators, ``pw_migrate``
included, run one after the other; a failed run releases it with its
connection.

Transactions: each module runs in its own transaction (a failure leaves
nothing of it, and it is not recorded), unless it declares
``TRANSACTIONAL = False`` at top level: then its statements run one by one in
autocommit (for ``CREATE INDEX CONCURRENTLY``), and it is recorded afterwards.

Rolling back (:mod:`convdb.migrate.downgrade`) refuses, unless ``force``, to
drop a table or column that holds rows: it tries the rollback first, in a
transaction that is rolled back (:mod:`convdb.migrate.dataloss`).

Library entry points (the CLI is a thin shell over them): :func:`run`,
:func:`dry_run`, :func:`status`, :func:`rollback`, :func:`create`, and
:func:`convdb.migrate.squash.squash`.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from peewee_migrate.template import TEMPLATE

from ..db import closing, open_database, resolve_url
from ..exceptions import MigrationError
from .downgrade import rollback
from .history import SourceState, inspect, listed, read_history, record_checksums, record_squashes
from .lock import MIGRATION_LOCK_KEY, MigrationDatabase, open_locked
from .order import one_source, plan, select, source_of
from .sources import CORE, MODULE_RE, Source, SourceRouter, new_module_filename, write_new
from .steps import DryRun, DryRunStep, apply_one, try_one

log = logging.getLogger("convdb.migrate")
Echo = Callable[[str], None]


def _check(states: Sequence[SourceState], required: int, accept: Iterable[str]) -> set[str]:
    """Raise :class:`MigrationError` listing every reason not to migrate; return accepted keys.

    The first ``required`` states are dependencies that must have nothing pending.
    """
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
        for squash, gone in state.plan.unavailable.items():
            replaced = state.squashes[squash]
            applied = [n for n in replaced if n in state.done]
            problems.append(
                f"{src.name}/{squash} replaces {listed(replaced)}; {listed(applied)} "
                f"applied, but {listed(gone)} neither applied nor on disk"
            )
            hints.append(
                f"Restore {', '.join(f'{n}.py' for n in gone)} (from the release that shipped "
                f"them) so they run before {squash} is recorded, then run the command again."
            )
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
    targets, required = select(sources, plugin)
    applied: list[tuple[str, str]] = []
    with closing(open_locked(url)) as db:
        states = [inspect(db, s) for s in [*required, *targets]]
        accepted = _check(states, len(required), accept)
        for state in states:
            record_checksums(db, state, accepted, echo)
        for state in states[len(required) :]:
            source = state.source
            if not state.pending:
                echo(f"{source.name}: nothing to migrate")
                continue
            # the replaced modules a partly applied squash still needs, the
            # squashes to record, then the rest
            applied += _apply_all(db, source, state.plan.first, echo)
            if state.plan.record:
                record_squashes(db, source, echo)
            applied += _apply_all(db, source, state.to_run, echo)
    return applied


def _apply_all(db, source: Source, names: list[str], echo: Echo) -> list[tuple[str, str]]:
    router = SourceRouter(db, source)  # a fresh one: its replay reads the history as it is now
    for name in names:
        apply_one(router, name)
        echo(f"{source.name}: applied {name}")
    return [(source.name, name) for name in names]


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
    targets, required = select(sources, plugin)
    result = DryRun()
    with closing(open_locked(url)) as db:
        states = [inspect(db, s) for s in [*required, *targets]]
        _check(states, len(required), accept)
        states = states[len(required) :]

        class _Undo(Exception):
            pass

        try:
            with db.atomic():
                for state in states:
                    if not _try_source(db, state, result):
                        break
                raise _Undo
        except _Undo:
            pass
    return result


def _try_source(db, state, result: DryRun) -> bool:
    """Add ``state``'s pending modules to ``result``; False once one fails."""
    src = state.source
    router = SourceRouter(db, src)
    for name in state.pending:
        if name in state.plan.record:
            replaced = state.squashes[name]
            result.steps.append(
                DryRunStep(
                    src.name,
                    name,
                    recorded=f"would be recorded as applied without running: the "
                    f"{len(replaced)} module(s) it replaces are applied",
                )
            )
            continue
        step = try_one(router, name)
        result.steps.append(step)
        if step.error:
            return False
    return True


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
    # squashes on disk -> what they replace; applied squash -> the replaced
    # rows kept aside (name, when it ran); pending squashes to be recorded
    # without running; modules on disk that never run -> their squash;
    # squash -> replaced modules neither applied nor on disk
    replaces: dict[str, list[str]] = field(default_factory=dict)
    covers: dict[str, list[tuple[str, dt.datetime | None]]] = field(default_factory=dict)
    to_record: list[str] = field(default_factory=list)
    replaced_pending: dict[str, str] = field(default_factory=dict)
    unavailable: dict[str, list[str]] = field(default_factory=dict)


def status(
    url: str | None = None,
    *,
    sources: Iterable[Source] | None = None,
    plugin: str | None = None,
) -> list[SourceStatus]:
    """Per source: applied (with when), pending, changed, missing, squashes; writes nothing.

    With the default sources, history tables (``migratehistory_*``) of
    plugins that are no longer installed are listed too, as not installed.
    """
    targets, _ = select(sources, plugin)
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
                    replaces=st.squashes,
                    covers={
                        squash: [(r.name, r.migrated_at) for r in st.covers(squash)]
                        for squash in st.squashes
                        if squash in st.done and st.covers(squash)
                    },
                    to_record=st.plan.record,
                    replaced_pending=st.replaced_pending,
                    unavailable=st.plan.unavailable,
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


def create(name: str, *, source: Source | None = None, plugin: str | None = None) -> Path:
    """Scaffold ``NNN_name.py`` in a source's package, numbered after the highest one.

    The source is ``source``, else the installed plugin ``plugin``, else the
    core. Uses peewee-migrate's own template, so the module is the same as
    one made by ``pw_migrate create``.
    """
    source = one_source(source, plugin)
    directory = source.directory
    numbers = [int(n[:3]) for n in source.modules()]
    number = max(numbers, default=0) + 1
    if number > 999:
        raise MigrationError(f"{source.name}: migration numbers are exhausted (999)")
    filename = new_module_filename(directory, number, name, source=source.name)
    path = directory / filename
    write_new(path, TEMPLATE.format(migrate="pass", rollback="pass", name=filename), source)
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
