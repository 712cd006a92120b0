"""Finding plugins: entry points loaded and validated (:func:`scan`, :func:`discover`),
in migration order (:func:`ordered_plugins`), and what they provide collected
over every plugin (:func:`load_handlers`, :func:`load_batch_handlers`,

:func:`load_adapters`, :func:`load_validators`)."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from collections.abc import Iterable, Sequence

from ..exceptions import PluginError
from .graph import order
from .plugin import (
    CORE_NAME,
    ENTRY_POINT_GROUP,
    BatchHandler,
    Found,
    Handler,
    Plugin,
    Problem,
    Scan,
    Validator,
)


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
    """convdb's version as installed (the core's entry point is missing only when that
    metadata is stale or absent: then ``?``)."""
    try:
        return importlib.metadata.version("convdb")
    except importlib.metadata.PackageNotFoundError:
        return "?"


def ordered_plugins() -> list[Found]:
    """:func:`discover` in migration order (``core`` first)."""
    return order(discover())


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


def load_validators(plugins: Sequence[Found] | None = None) -> dict[str, Validator]:
    """``{event_type: validator}`` over every plugin (default: every installed one)."""
    return _collect(plugins, "validators", "validator for the event type")


def load_adapters(plugins: Sequence[Found] | None = None) -> dict[str, object]:
    """``{adapter name: adapter}`` over every plugin (default: every installed one)."""
    return _collect(plugins, "adapters", "webhook adapter")
