"""Plugins: installed packages that extend the schema and the queue.

A plugin is an installed distribution with an entry point in the group
``convdb.plugins`` that names a :class:`Plugin`::

    # convdb_tags/__init__.py
    from convdb.plugins import Plugin

    plugin = Plugin(
        name="tags",                          # unique; names its history table
        migrations="convdb_tags.migrations",  # package of NNN_name.py modules
        depends_on=["core"],                  # migrated after these
        handlers={"conversation.tagged": handle_tagged},
        batch_handlers={},                    # optional: event type -> handler of a list
        adapters={},                          # optional: webhook adapters by name
    )

    # pyproject.toml
    [project.entry-points."convdb.plugins"]
    tags = "convdb_tags:plugin"

The core registers itself the same way, as the plugin ``core``
(:mod:`convdb.core`). Nothing else is ever scanned: only entry points.

Library surface (the queue worker and the CLI use these):

- :func:`scan` — every entry point, loaded and validated; never raises for a
  broken plugin, but lists it in :attr:`Scan.problems` (what ``convdb
  plugins`` shows).
- :func:`discover` — the valid plugins, or :class:`PluginError` for the
  first broken one (import failure, invalid object, duplicate name, missing
  migrations package), naming the plugin, its distribution and what to do.
- :func:`ordered_plugins` — :func:`discover` in migration order: ``core``
  first, then every plugin after its dependencies, independent plugins by
  name. A missing dependency or a cycle is a :class:`PluginError` naming the
  plugins involved, raised before anything touches a database.
- :func:`load_handlers`, :func:`load_batch_handlers`, :func:`load_adapters`
  — ``{name: object}`` over every plugin (``core``'s included). Two plugins
  claiming one event type (or adapter name) is a :class:`PluginError`
  naming both. The queue worker and the receiver call them once at start-up.
- :func:`order`, :func:`dependencies`, :func:`dependents` — the graph, on
  any list of :class:`Found` (pure functions).

Handlers and adapters may be given as objects or as ``"module:attribute"``
strings, imported when they are loaded; the core uses strings so that
discovering plugins never imports the ingest or receiver code.

Batch handlers: a batch handler takes the list of a claimed batch's events of
its type and returns ``{event_id: exception}`` for the events it refused
without writing anything (they go ``dead``). The worker calls it for a batch
of two or more such events, inside the batch's transaction; if it raises, the
transaction is rolled back and the events are redone one by one with the
one-event handler, which every batch handler must have beside it.
"""

from __future__ import annotations

import heapq
import importlib
import importlib.metadata
import importlib.util
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from .exceptions import PluginError

ENTRY_POINT_GROUP = "convdb.plugins"
CORE_NAME = "core"
# `\Z`, not `$`: `$` also matches before a trailing newline, which would then
# end up in a history table's name. Safe with .match and .fullmatch alike.
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,47}\Z")
EVENT_TYPE_RE = re.compile(r"^[A-Za-z0-9_.:-]+\Z")

Handler = Callable[[object], object]
BatchHandler = Callable[[list], Mapping[int, BaseException]]


@dataclass(frozen=True)
class Plugin:
    """What a plugin declares. Validated when built.

    ``name``: lowercase letters, digits and ``_`` (it names the history table
    ``migratehistory_<name>``). ``migrations``: the dotted name of a package
    of peewee-migrate modules, or ``None`` for a plugin with handlers only.
    ``depends_on``: names of plugins whose migrations must run first (every
    plugin runs after ``core`` anyway). ``handlers``: event type to a
    callable taking the ``inbound_events`` row, or to a ``"module:attr"``
    string naming one. ``batch_handlers``: event type to a callable taking a
    list of such rows (see the module's docstring); each needs a handler of
    the same event type. ``adapters``: webhook adapter name to an adapter
    (:mod:`convdb.serve`) or a ``"module:attr"`` string naming one.
    """

    name: str
    migrations: str | None = None
    depends_on: Sequence[str] = ()
    handlers: Mapping[str, Handler | str] = field(default_factory=dict)
    batch_handlers: Mapping[str, BatchHandler | str] = field(default_factory=dict)
    adapters: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        def bad(message: str) -> PluginError:
            return PluginError(f"invalid Plugin({self.name!r}): {message}", plugin=str(self.name))

        if not isinstance(self.name, str) or not NAME_RE.fullmatch(self.name):
            raise bad("name must be 1-48 lowercase letters, digits or '_', starting with a letter")
        if self.migrations is not None and (
            not isinstance(self.migrations, str)
            or not all(part.isidentifier() for part in self.migrations.split("."))
        ):
            raise bad(f"migrations must be a dotted package name, not {self.migrations!r}")
        if isinstance(self.depends_on, str) or not all(isinstance(d, str) for d in self.depends_on):
            raise bad("depends_on must be a list of plugin names")
        if self.name in self.depends_on:
            raise bad("a plugin cannot depend on itself")
        for what in ("handlers", "batch_handlers"):
            mapping = getattr(self, what)
            if not isinstance(mapping, Mapping):
                raise bad(f"{what} must be a mapping of event type to callable")
            for event_type, handler in mapping.items():
                if not isinstance(event_type, str) or not EVENT_TYPE_RE.fullmatch(event_type):
                    raise bad(f"{what} key {event_type!r} is not an event type")
                if not (callable(handler) or _is_reference(handler)):
                    raise bad(f"{what}[{event_type!r}] is neither callable nor 'module:attr'")
        orphans = sorted(set(self.batch_handlers) - set(self.handlers))
        if orphans:
            raise bad(f"batch_handlers without a one-event handler (the fallback): {orphans}")
        if not isinstance(self.adapters, Mapping):
            raise bad("adapters must be a mapping of adapter name to adapter")
        for adapter_name in self.adapters:
            if not isinstance(adapter_name, str) or not NAME_RE.fullmatch(adapter_name):
                raise bad(f"adapter name {adapter_name!r} must match {NAME_RE.pattern}")
        object.__setattr__(self, "depends_on", tuple(dict.fromkeys(self.depends_on)))
        for what in ("handlers", "batch_handlers", "adapters"):
            object.__setattr__(self, what, dict(getattr(self, what)))

    @property
    def history_table(self) -> str:
        """The peewee-migrate history table of this plugin's migrations."""
        return "migratehistory" if self.name == CORE_NAME else f"migratehistory_{self.name}"

    def resolve(self, what: str) -> dict[str, object]:
        """``handlers``, ``batch_handlers`` or ``adapters`` with every ``"module:attr"``
        string imported."""
        resolved = {}
        for key, value in getattr(self, what).items():
            if _is_reference(value):
                module_name, _, attr = value.partition(":")
                try:
                    value = getattr(importlib.import_module(module_name), attr)
                except (ImportError, AttributeError) as exc:
                    raise PluginError(
                        f"plugin {self.name!r}: {what}[{key!r}] = {value!r} cannot be "
                        f"loaded: {exc}",
                        plugin=self.name,
                        hint="Install the package that provides it, or fix the plugin.",
                    ) from exc
            resolved[key] = value
        return resolved

    def resolve_handlers(self) -> dict[str, Handler]:
        """The handlers with every ``"module:attr"`` string imported."""
        return self.resolve("handlers")


def _is_reference(value) -> bool:
    return isinstance(value, str) and ":" in value


@dataclass(frozen=True)
class Found:
    """A valid plugin and where it came from."""

    plugin: Plugin
    entry_point: str
    distribution: str
    version: str

    @property
    def name(self) -> str:
        return self.plugin.name

    @property
    def origin(self) -> str:
        return f"{self.distribution} {self.version}"


@dataclass(frozen=True)
class Problem:
    """An entry point that did not yield a usable plugin, and why."""

    entry_point: str
    distribution: str
    message: str
    hint: str

    def error(self) -> PluginError:
        return PluginError(self.message, plugin=self.entry_point, hint=self.hint)


@dataclass
class Scan:
    plugins: list[Found]
    problems: list[Problem]


def _distribution(ep: importlib.metadata.EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "an unknown distribution", "?"
    return dist.metadata["Name"] or "?", dist.version or "?"


def _check_migrations(plugin: Plugin) -> str | None:
    """Why the plugin's migrations package is unusable, or ``None``."""
    if plugin.migrations is None:
        return None
    try:
        spec = importlib.util.find_spec(plugin.migrations)
    except (ImportError, ValueError) as exc:
        spec, reason = None, f"{type(exc).__name__}: {exc}"
    else:
        reason = "no such module"
    if spec is None:
        return f"its migrations package {plugin.migrations!r} cannot be found ({reason})"
    if not spec.submodule_search_locations:
        return f"its migrations {plugin.migrations!r} is a module, not a package (a folder)"
    return None


def scan(entry_points: Iterable[importlib.metadata.EntryPoint] | None = None) -> Scan:
    """Load every ``convdb.plugins`` entry point; broken ones become :class:`Problem` s."""
    if entry_points is None:
        entry_points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    found: list[Found] = []
    problems: list[Problem] = []
    by_name: dict[str, Found] = {}
    for ep in entry_points:
        dist, version = _distribution(ep)
        where = f"plugin {ep.name!r} (entry point {ep.value!r} of distribution {dist} {version})"
        reinstall = f"Fix or reinstall {dist}, or uninstall it (pip uninstall {dist})."
        try:
            obj = ep.load()
        except PluginError as exc:
            problems.append(Problem(ep.name, dist, f"{where}: {exc.message}", reinstall))
            continue
        except Exception as exc:  # a plugin's import may fail in any way
            detail = " ".join(f"{type(exc).__name__}: {exc}".split())
            problems.append(Problem(ep.name, dist, f"{where} fails to import: {detail}", reinstall))
            continue
        if not isinstance(obj, Plugin):
            problems.append(
                Problem(
                    ep.name,
                    dist,
                    f"{where} is a {type(obj).__name__}, not a convdb.plugins.Plugin",
                    f"Point the entry point at a Plugin(...) object. {reinstall}",
                )
            )
            continue
        reason = _check_migrations(obj)
        if reason:
            problems.append(Problem(ep.name, dist, f"{where}: {reason}", reinstall))
            continue
        if obj.name in by_name:
            first = by_name[obj.name]
            problems.append(
                Problem(
                    ep.name,
                    dist,
                    f"two plugins are named {obj.name!r}: one from {first.origin} "
                    f"(entry point {first.entry_point!r}) and one from {dist} {version} "
                    f"(entry point {ep.name!r})",
                    "Uninstall one of the two distributions; plugin names must be unique.",
                )
            )
            continue
        entry = Found(obj, ep.name, dist, version)
        by_name[obj.name] = entry
        found.append(entry)
    return Scan(found, problems)


def discover() -> list[Found]:
    """Every installed plugin, or :class:`PluginError` for the first broken one."""
    result = scan_with_core()
    if result.problems:
        raise result.problems[0].error()
    return result.plugins


CORE_ENTRY_POINT = importlib.metadata.EntryPoint(CORE_NAME, "convdb.core:plugin", ENTRY_POINT_GROUP)


def scan_with_core(entry_points: Iterable[importlib.metadata.EntryPoint] | None = None) -> Scan:
    """:func:`scan`, with the core loaded from :data:`CORE_ENTRY_POINT` when its entry
    point was not found.

    It is missing only when convdb's own metadata is stale or shadowed (an old
    ``convdb.egg-info`` in the working directory, a checkout on
    ``PYTHONPATH`` without ``pip install``); the core is still the core, and
    ``convdb plugins`` says where it came from.
    """
    result = scan(entry_points)
    if any(f.name == CORE_NAME for f in result.plugins):
        return result
    core = scan([CORE_ENTRY_POINT])
    origin = "convdb (built in: no 'core' entry point found; reinstall convdb)"
    found = [Found(f.plugin, f.entry_point, origin, _own_version()) for f in core.plugins]
    return Scan(found + result.plugins, core.problems + result.problems)


def _own_version() -> str:
    from . import __version__

    return __version__


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


def ordered_plugins() -> list[Found]:
    """:func:`discover` in migration order (``core`` first)."""
    return order(discover())


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


def _collect(plugins: Sequence[Found] | None, what: str, label: str) -> dict[str, object]:
    """``{key: object}`` of one kind over ``plugins`` (default: every installed one).

    Raises :class:`PluginError` when two plugins claim one key, or a
    ``"module:attr"`` string cannot be imported.
    """
    if plugins is None:
        plugins = discover()
    # core first, then by name: the error names the two plugins in a stable order
    plugins = sorted(plugins, key=lambda f: (f.name != CORE_NAME, f.name))
    collected: dict[str, object] = {}
    owner: dict[str, Found] = {}
    for found in plugins:
        for key, value in found.plugin.resolve(what).items():
            if key in owner:
                first = owner[key]
                raise PluginError(
                    f"plugins {first.name!r} ({first.origin}) and {found.name!r} "
                    f"({found.origin}) both provide the {label} {key!r}",
                    plugin=found.name,
                    hint=f"Uninstall one of them; each {label} has exactly one provider.",
                )
            owner[key] = found
            collected[key] = value
    return collected


def load_handlers(plugins: Sequence[Found] | None = None) -> dict[str, Handler]:
    """``{event_type: handler}`` over every plugin (default: every installed one)."""
    return _collect(plugins, "handlers", "handler for the event type")


def load_batch_handlers(plugins: Sequence[Found] | None = None) -> dict[str, BatchHandler]:
    """``{event_type: batch handler}`` over every plugin (default: every installed one)."""
    return _collect(plugins, "batch_handlers", "batch handler for the event type")


def load_adapters(plugins: Sequence[Found] | None = None) -> dict[str, object]:
    """``{adapter name: adapter}`` over every plugin (default: every installed one)."""
    return _collect(plugins, "adapters", "webhook adapter")


__all__ = [
    "CORE_NAME",
    "ENTRY_POINT_GROUP",
    "BatchHandler",
    "Found",
    "Handler",
    "Plugin",
    "Problem",
    "Scan",
    "dependencies",
    "dependents",
    "discover",
    "load_adapters",
    "load_batch_handlers",
    "load_handlers",
    "order",
    "ordered_plugins",
    "scan",
    "scan_with_core",
]
