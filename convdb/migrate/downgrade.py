"""Rolling migrations back: :func:`rollback`, and what it refuses to do.

Unless forced, a rollback refuses while an installed plugin that depends on
the source has applied migrations, and refuses to drop a table or column
that holds rows (:mod:`convdb.migrate.dataloss`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .. import plugins as plugins_lib
from ..db import closing
from ..exceptions import MigrationError
from . import dataloss
from .history import read_history
from .lock import open_locked
from .order import find_plugin, one_source
from .sources import Source, SourceRouter
from .steps import apply_one

Echo = Callable[[str], None]


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
    core. Unless ``force``, refuses while an installed plugin that depends on
    it has applied migrations, and refuses to drop a table or column that
    holds rows: the rollbacks are first tried in a transaction that is rolled
    back (:func:`convdb.migrate.dataloss.trial`), and the refusal names each
    table and column with its row count. A module that declares
    ``TRANSACTIONAL = False`` cannot be tried: the modules before it are
    checked and rolled back first, then it, then the rest are checked.
    """
    if count < 1:
        raise MigrationError("--count must be at least 1", source=plugin or "core")
    found = plugins_lib.discover()
    source = one_source(source, plugin, found)
    undone: list[str] = []
    with closing(open_locked(url)) as db:
        if not force:
            _refuse_dependents(db, found, source)
        done = SourceRouter(db, source).done
        if len(done) < count:
            raise MigrationError(
                f"{source.name}: cannot roll back {count} migration(s), only {len(done)} applied",
                source=source.name,
            )
        names = list(reversed(done[-count:]))
        for name in names:
            if source.text(name) is None:
                raise MigrationError(
                    f"{source.name}/{name} cannot be rolled back: {source.path(name)} is gone",
                    source=source.name,
                    migration=name,
                    hint="Restore the file.",
                )
        for segment in _segments(source, names):
            if not force and source.transactional(segment[0]):
                _refuse_data_loss(db, source, segment, undone)
            router = SourceRouter(db, source)
            for name in segment:
                apply_one(router, name, downgrade=True)
                undone.append(name)
                echo(f"{source.name}: rolled back {name}")
    return undone


def _refuse_dependents(db, found: Sequence[plugins_lib.Found], source: Source) -> None:
    blocking = []
    for dependent in plugins_lib.dependents(found, source.name):
        f = find_plugin(found, dependent)
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


def _segments(source: Source, names: list[str]) -> list[list[str]]:
    """``names`` cut so that each module that cannot be tried in a transaction stands alone."""
    segments: list[list[str]] = []
    for name in names:
        if not source.transactional(name):
            segments.append([name])
        elif segments and source.transactional(segments[-1][0]):
            segments[-1].append(name)
        else:
            segments.append([name])
    return segments


def _refuse_data_loss(db, source: Source, names: list[str], undone: list[str]) -> None:
    def steps() -> None:
        router = SourceRouter(db, source)
        for name in names:
            apply_one(router, name, downgrade=True)

    losses = dataloss.trial(db, steps)
    if not losses:
        return
    what = names[0] if len(names) == 1 else f"{names[0]} ... {names[-1]} ({len(names)} modules)"
    done = (
        "nothing was rolled back"
        if not undone
        else f"{', '.join(undone)} {'was' if len(undone) == 1 else 'were'} rolled back before"
    )
    raise MigrationError(
        f"refusing to roll back {source.name}/{what}: it would drop stored data:\n"
        + "\n".join(f"  - {loss.describe()}" for loss in losses)
        + f"\n{done}",
        source=source.name,
        migration=names[0],
        hint="Back up what you need, then run the same command with --force.",
    )
