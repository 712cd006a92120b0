"""The plugin graph: dependencies, migration order, dependents (pure functions on
lists of :class:`~convdb.plugins.plugin.Found`)."""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence

from ..exceptions import PluginError
from .plugin import CORE_NAME, Found


def dependencies(found: Found) -> tuple[str, ...]:
    """What ``found`` is migrated after: its ``depends_on``, and ``core`` for every plugin."""
    deps = found.plugin.depends_on
    if found.name != CORE_NAME and CORE_NAME not in deps:
        deps = (CORE_NAME, *deps)
    return deps


def order(plugins: Sequence[Found]) -> list[Found]:
    """``plugins`` in migration order; :class:`PluginError` on a missing dependency or cycle.

    Kahn's algorithm with a heap keyed on the name: among plugins whose
    dependencies are all placed, the alphabetically first goes next, so the
    order never depends on installation order.
    """
    by_name = {f.name: f for f in plugins}
    for f in plugins:
        missing = [d for d in f.plugin.depends_on if d not in by_name]
        if missing:
            raise PluginError(
                f"plugin {f.name!r} ({f.origin}) depends on "
                + ", ".join(repr(m) for m in missing)
                + ", which is not installed",
                plugin=f.name,
                hint=f"Install the missing plugin, or uninstall {f.distribution}.",
            )
    waiting = {f.name: set(dependencies(f)) & by_name.keys() for f in plugins}
    ready = [name for name, deps in waiting.items() if not deps]
    heapq.heapify(ready)
    result: list[Found] = []
    while ready:
        name = heapq.heappop(ready)
        result.append(by_name[name])
        for other, deps in waiting.items():
            if name in deps:
                deps.discard(name)
                if not deps:
                    heapq.heappush(ready, other)
    if len(result) < len(plugins):
        cycle = _find_cycle({n: d for n, d in waiting.items() if d})
        raise PluginError(
            "plugins depend on each other in a cycle: " + " -> ".join(cycle),
            plugin=cycle[0],
            hint="Remove one of these dependencies (depends_on) in one of the plugins.",
        )
    return result


def _find_cycle(waiting: Mapping[str, set[str]]) -> list[str]:
    """One cycle among plugins that are still waiting, as ``[a, b, ..., a]``."""
    start = min(waiting)
    path = [start]
    while True:
        nxt = min(d for d in waiting[path[-1]] if d in waiting)
        if nxt in path:
            return [*path[path.index(nxt) :], nxt]
        path.append(nxt)


def dependents(plugins: Sequence[Found], name: str) -> list[str]:
    """Names of the plugins that depend on ``name``, directly or not (sorted)."""
    result: set[str] = set()
    frontier = {name}
    while frontier:
        frontier = {
            f.name
            for f in plugins
            if f.name not in result and f.name != name and frontier & set(dependencies(f))
        }
        result |= frontier
    return sorted(result)
