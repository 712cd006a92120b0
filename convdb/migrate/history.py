"""Migration histories: what each source has applied, checked, and squashes accounted for.

Each source keeps a history table (``migratehistory`` for the core, the one
plain ``pw_migrate`` uses; ``migratehistory_<plugin>`` for a plugin): one row
per applied module, in order of ``id``, with a ``checksum`` column convdb
adds (:mod:`convdb.migrate.sources`).

Squashes. A module that declares ``REPLACES = [...]`` stands for those
modules. For each such module not yet in the history (only the history
table counts, see below):

- every module it replaces is in the history: it is *recorded* as applied
  without running (:func:`record_squashes`);
- none of them is: it runs like any module, and the replaced modules still on
  disk never run;
- some of them are: the missing ones run first, if their files are still on
  disk, then it is recorded; if a missing one's file is gone, nothing runs and
  :func:`check` says what is missing.

Several modules may replace the same list (a baseline split into readable
parts); each follows the rule on its own.

Replaced rows. peewee-migrate replays every row of a history table by
reading its file, so the rows of replaced modules (whose files get deleted)
cannot stay there. Recording a squash moves them, in the same transaction,
into one bookkeeping table, ``convdb_replaced_migrations`` (history table,
name, when it ran, checksum, original id, the squash that replaced it), and
gives the squash's own row the first of their ids, so the history keeps its
order (a rollback takes the last row). ``convdb status`` shows them under
their squash. Rolling a squash back forgets the replaced rows no other
applied squash accounts for. A squash that is *run* has nothing to move.

Read-only: :func:`inspect` (a source's :class:`SourceState`) and
:func:`listed` (names for messages). Writing, under the migration
lock: :func:`record_checksums`, :func:`record_squashes`,
:func:`forget_replaced`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import peewee

from ..exceptions import MigrationError
from .sources import Source, SourceRouter

Echo = Callable[[str], None]

REPLACED_TABLE = "convdb_replaced_migrations"

_REPLACED_DDL = f"""
CREATE TABLE IF NOT EXISTS {REPLACED_TABLE} (
    history_table  TEXT NOT NULL,
    name           TEXT NOT NULL,
    replaced_by    TEXT NOT NULL,
    migrated_at    TIMESTAMP,
    checksum       TEXT,
    history_id     INTEGER,
    recorded_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (history_table, name)
)
"""


@dataclass(frozen=True)
class HistoryRow:
    """One applied module: a row of a history table, or a replaced one kept aside."""

    name: str
    migrated_at: dt.datetime | None
    checksum: str | None
    id: int | None = None
    replaced_by: str | None = None


def read_history(db: peewee.Database, table: str) -> list[HistoryRow]:
    """Rows of a history table in order, or ``[]`` if it does not exist; writes nothing."""
    if not db.table_exists(table):
        return []
    columns = {c.name for c in db.get_columns(table)}
    checksum_sql = "checksum" if "checksum" in columns else "NULL"
    cursor = db.execute_sql(
        f'SELECT name, migrated_at, {checksum_sql}, id FROM "{table}" ORDER BY id'
    )
    return [HistoryRow(*row) for row in cursor.fetchall()]


def read_replaced(db: peewee.Database, table: str) -> list[HistoryRow]:
    """The replaced rows kept aside for history table ``table``, in their original order."""
    if not db.table_exists(REPLACED_TABLE):
        return []
    cursor = db.execute_sql(
        f"SELECT name, migrated_at, checksum, history_id, replaced_by FROM {REPLACED_TABLE} "
        "WHERE history_table = %s ORDER BY history_id, name",
        (table,),
    )
    return [HistoryRow(*row) for row in cursor.fetchall()]


@dataclass
class SquashPlan:
    """What the squashes on disk mean for one history (see the module docstring)."""

    record: list[str] = field(default_factory=list)
    first: list[str] = field(default_factory=list)
    covered_by: dict[str, str] = field(default_factory=dict)
    unavailable: dict[str, list[str]] = field(default_factory=dict)


def plan_squashes(
    files: Sequence[str], squashes: dict[str, list[str]], done: Iterable[str]
) -> SquashPlan:
    """Decide, for the squashes on disk, which are recorded and what runs first.

    ``files`` are the modules on disk in order, ``squashes`` maps each squash
    among them to its ``REPLACES``, ``done`` are the names in the history
    table. ``record``: squashes to record as applied without running;
    ``first``: replaced modules to run before recording them; ``covered_by``:
    each replaced module -> the (first) squash that accounts for it;
    ``unavailable``: squash -> replaced modules neither applied nor on disk.
    """
    done = set(done)
    on_disk = set(files)
    plan = SquashPlan()
    for squash, replaced in squashes.items():
        for name in replaced:
            plan.covered_by.setdefault(name, squash)
        if squash in done or not any(name in done for name in replaced):
            continue
        missing = [name for name in replaced if name not in done]
        gone = [name for name in missing if name not in on_disk]
        if gone:
            plan.unavailable[squash] = gone
            continue
        plan.first.extend(name for name in missing if name not in plan.first)
        plan.record.append(squash)
    plan.first.sort()
    return plan


def _number(name: str) -> int | None:
    return int(name[:3]) if name[:3].isdigit() else None


@dataclass
class SourceState:
    """What :func:`inspect` found for one source."""

    source: Source
    files: list[str]
    history: list[HistoryRow]
    replaced: list[HistoryRow] = field(default_factory=list)
    squashes: dict[str, list[str]] = field(default_factory=dict)
    current: dict[str, str] = field(default_factory=dict)

    @cached_property
    def plan(self) -> SquashPlan:
        return plan_squashes(self.files, self.squashes, (row.name for row in self.history))

    @property
    def done(self) -> set[str]:
        return {row.name for row in self.history}

    @property
    def applied(self) -> list[tuple[str, dt.datetime | None]]:
        return [(row.name, row.migrated_at) for row in self.history]

    @property
    def to_run(self) -> list[str]:
        """Modules that run after the squashes are recorded, in order."""
        skip = self.done | set(self.plan.record) | set(self.plan.first)
        return [n for n in self.files if n not in skip and n not in self.plan.covered_by]

    @property
    def pending(self) -> list[str]:
        """Everything the next migrate changes the history for, in the order it does."""
        return [*self.plan.first, *self.plan.record, *self.to_run]

    @property
    def replaced_pending(self) -> dict[str, str]:
        """Modules on disk that never run on their own -> the squash that replaces them."""
        skip = self.done | set(self.plan.first)
        return {
            n: self.plan.covered_by[n]
            for n in self.files
            if n in self.plan.covered_by and n not in skip
        }

    def _own(self, row: HistoryRow) -> bool:
        """A history row checked on its own (not one a squash accounts for)."""
        return row.name not in self.plan.covered_by

    @property
    def changed(self) -> list[str]:
        return [
            row.name
            for row in self.history
            if self._own(row)
            and row.checksum
            and row.name in self.current
            and self.current[row.name] != row.checksum
        ]

    @property
    def missing(self) -> list[str]:
        return [r.name for r in self.history if self._own(r) and r.name not in self.current]

    @property
    def unrecorded(self) -> list[str]:
        return [
            r.name
            for r in self.history
            if self._own(r) and not r.checksum and r.name in self.current
        ]

    @property
    def out_of_order(self) -> dict[str, str]:
        """Module to run -> the highest-numbered applied one it would run after."""
        numbered = [(n, row.name) for row in self.history if (n := _number(row.name)) is not None]
        if not numbered:
            return {}
        top_number, top_name = max(numbered)
        return {
            name: top_name
            for name in self.to_run
            if (n := _number(name)) is not None and n < top_number
        }

    def covers(self, squash: str) -> list[HistoryRow]:
        """The replaced rows kept aside that ``squash`` accounts for."""
        replaced = set(self.squashes.get(squash, ()))
        return [row for row in self.replaced if row.name in replaced]


def inspect(db: peewee.Database, source: Source) -> SourceState:
    """The state of ``source`` in ``db``; reads only."""
    files = source.modules()
    state = SourceState(
        source,
        files,
        read_history(db, source.history_table),
        read_replaced(db, source.history_table),
        source.squashes(),
    )
    for name in {*files, *(row.name for row in state.history)}:
        digest = source.checksum(name)
        if digest is not None:
            state.current[name] = digest
    return state


def listed(names: Sequence[str], limit: int = 4) -> str:
    if len(names) <= limit:
        return ", ".join(names)
    return f"{', '.join(names[: limit - 1])}, ... {names[-1]} ({len(names)} modules)"


def record_checksums(db, state: SourceState, accepted: set[str], echo: Echo) -> None:
    """Fill in missing checksums, and the new ones of accepted edits."""
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


def record_squashes(db, source: Source, echo: Echo) -> list[str]:
    """Record every squash whose replaced modules are all applied; one transaction.

    Re-reads the history (so it follows the replaced modules just run), moves
    the rows of the replaced modules into ``convdb_replaced_migrations`` and
    records each squash with the first free id among them. Returns the
    squashes recorded.
    """
    history_model = SourceRouter(db, source).model
    table = source.history_table
    with db.atomic():
        state = inspect(db, source)
        names = state.plan.record
        if not names:
            return []
        if state.plan.first:
            raise MigrationError(
                f"{source.name}: cannot record {', '.join(names)} before "
                f"{', '.join(state.plan.first)} ran",
                source=source.name,
            )
        db.execute_sql(_REPLACED_DDL)
        squashing = set(names) | (state.done & set(state.squashes))
        moving = [r for r in state.history if state.plan.covered_by.get(r.name) in squashing]
        for row in moving:
            db.execute_sql(
                f"INSERT INTO {REPLACED_TABLE} "
                "(history_table, name, replaced_by, migrated_at, checksum, history_id) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (history_table, name) DO UPDATE "
                "SET replaced_by = EXCLUDED.replaced_by, migrated_at = EXCLUDED.migrated_at, "
                "checksum = EXCLUDED.checksum, history_id = EXCLUDED.history_id, "
                "recorded_at = now()",
                (
                    table,
                    row.name,
                    state.plan.covered_by[row.name],
                    row.migrated_at,
                    row.checksum,
                    row.id,
                ),
            )
        history_model.delete().where(history_model.name.in_([r.name for r in moving])).execute()
        used = {r.id for r in state.history} - {r.id for r in moving}
        kept = {r.name: r.id for r in read_replaced(db, table)}
        for squash in names:
            ids = (kept.get(n) for n in state.squashes[squash])
            free = sorted(i for i in ids if i is not None and i not in used)
            row = {"name": squash, "checksum": source.checksum(squash)}
            if free:
                row["id"] = free[0]
                used.add(free[0])
            history_model.insert(**row).execute()
    for squash in names:
        echo(
            f"{source.name}: recorded {squash} as applied (it replaces "
            f"{listed(state.squashes[squash])}, all applied)"
        )
    return names


def forget_replaced(db, source: Source, squash: str) -> None:
    """Drop the replaced rows ``squash`` stood for that no other applied squash accounts for.

    Called inside the transaction that rolls ``squash`` back (its replaced
    modules are undone with it) or that runs it afresh (rows left from an
    earlier life are stale).
    """
    if not db.table_exists(REPLACED_TABLE):
        return
    replaced = source.replaces(squash) or []
    done = {row.name for row in read_history(db, source.history_table)} - {squash}
    still = {n for s, names in source.squashes().items() if s in done for n in names}
    gone = [name for name in replaced if name not in still]
    if gone:
        db.execute_sql(
            f"DELETE FROM {REPLACED_TABLE} WHERE history_table = %s AND name = ANY(%s)",
            (source.history_table, gone),
        )
