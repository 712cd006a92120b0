"""Which migration sources a command works on, and in which order.

Every installed plugin with a migrations package (the core included, as
``core``) is one :class:`~convdb.migrate.sources.Source`; :func:`plan` puts
them in migration order (core first, then each plugin after what it depends
on) and, for one plugin, adds the sources it needs migrated first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .. import plugins as plugins_lib
from ..exceptions import PluginError
from .sources import CORE, Source


def source_of(found: plugins_lib.Found) -> Source:
    """The migration source of an installed plugin (it must have migrations)."""
    plugin = found.plugin
    if plugin.name == plugins_lib.CORE_NAME and plugin.migrations == CORE.package:
        return CORE
    return Source(plugin.name, plugin.migrations, plugin.history_table)


def installed_sources() -> tuple[list[plugins_lib.Found], list[Source]]:
    found = plugins_lib.ordered_plugins()
    return found, [source_of(f) for f in found if f.plugin.migrations]


def find_plugin(found: Sequence[plugins_lib.Found], name: str) -> plugins_lib.Found:
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
    found, sources = installed_sources()
    if plugin is None:
        return sources, []
    target = find_plugin(found, plugin)
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


def select(sources: Iterable[Source] | None, plugin: str | None):
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


def one_source(
    source: Source | None = None,
    plugin: str | None = None,
    found: Sequence[plugins_lib.Found] | None = None,
) -> Source:
    """``source``, else the installed plugin ``plugin``'s, else the core's."""
    if source is not None:
        return source
    if plugin is None:
        return CORE
    target = find_plugin(plugins_lib.discover() if found is None else found, plugin)
    if not target.plugin.migrations:
        raise PluginError(f"plugin {plugin!r} has no migrations package", plugin=plugin)
    return source_of(target)
