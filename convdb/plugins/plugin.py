"""What a plugin declares (:class:`Plugin`) and what discovery found (:class:`Found`,
:class:`Problem`, :class:`Scan`): the data of the plugin system, validated when built."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ..exceptions import PluginError

ENTRY_POINT_GROUP = "convdb.plugins"
CORE_NAME = "core"
# `\Z`, not `$`: `$` also matches before a trailing newline, which would then
# end up in a history table's name. Safe with .match and .fullmatch alike.
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,47}\Z")
EVENT_TYPE_RE = re.compile(r"^[A-Za-z0-9_.:-]+\Z")

Handler = Callable[[object], object]
BatchHandler = Callable[[list], Mapping[int, BaseException]]
#: Takes an event's payload (a dict); returns the payload to store (repaired) or
#: None (store it as given); raises :class:`~convdb.exceptions.PayloadError`
#: naming the bad field when the event can never be handled.
Validator = Callable[[dict], "dict | None"]


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
    ``validators``: event type to a :data:`Validator` (or ``"module:attr"``),
    the check every door (``enqueue``, the receiver) runs before it accepts an
    event of that type (:mod:`convdb.queue.acceptance`); each needs a handler
    of the same event type, which should call the same function. An event
    type with a handler but no validator is accepted on the queue's limits
    alone: the plugin then answers for its own payloads.
    """

    name: str
    migrations: str | None = None
    depends_on: Sequence[str] = ()
    handlers: Mapping[str, Handler | str] = field(default_factory=dict)
    batch_handlers: Mapping[str, BatchHandler | str] = field(default_factory=dict)
    adapters: Mapping[str, object] = field(default_factory=dict)
    validators: Mapping[str, Validator | str] = field(default_factory=dict)

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
        for what in ("handlers", "batch_handlers", "validators"):
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
        unchecked = sorted(set(self.validators) - set(self.handlers))
        if unchecked:
            raise bad(f"validators without a handler of the same event type: {unchecked}")
        if not isinstance(self.adapters, Mapping):
            raise bad("adapters must be a mapping of adapter name to adapter")
        for adapter_name in self.adapters:
            if not isinstance(adapter_name, str) or not NAME_RE.fullmatch(adapter_name):
                raise bad(f"adapter name {adapter_name!r} must match {NAME_RE.pattern}")
        object.__setattr__(self, "depends_on", tuple(dict.fromkeys(self.depends_on)))
        for what in ("handlers", "batch_handlers", "adapters", "validators"):
            object.__setattr__(self, what, dict(getattr(self, what)))

    @property
    def history_table(self) -> str:
        """The peewee-migrate history table of this plugin's migrations."""
        return "migratehistory" if self.name == CORE_NAME else f"migratehistory_{self.name}"

    def resolve(self, what: str) -> dict[str, object]:
        """``handlers``, ``batch_handlers``, ``adapters`` or ``validators`` with every
        ``"module:attr"`` string imported."""
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
