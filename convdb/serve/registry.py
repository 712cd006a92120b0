"""Webhook adapters by name, from every installed plugin (the core's included).

``Plugin(adapters={"name": ...})`` maps a name to an :class:`Adapter`
subclass, an instance, or a ``"module:attr"`` string naming either; the core
registers ``standard`` this way in :mod:`convdb.core`. Two plugins claiming
one name is a :class:`~convdb.exceptions.PluginError` naming both.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..exceptions import PluginError
from ..plugins import Found, load_adapters
from .adapters import Adapter


def load(plugins: Sequence[Found] | None = None) -> dict[str, Adapter]:
    """``{name: adapter instance}``; :class:`PluginError` for anything that is not one."""
    adapters: dict[str, Adapter] = {}
    for name, value in load_adapters(plugins).items():
        if isinstance(value, type) and issubclass(value, Adapter):
            try:
                value = value()
            except Exception as exc:
                raise PluginError(
                    f"webhook adapter {name!r}: {value.__name__}() failed: {exc}",
                    hint="Fix or reinstall the plugin that provides it.",
                ) from exc
        if not isinstance(value, Adapter):
            raise PluginError(
                f"webhook adapter {name!r} is a {type(value).__name__}, "
                "not a convdb.serve.Adapter (subclass or instance)",
                hint="Fix or reinstall the plugin that provides it.",
            )
        adapters[name] = value
    return adapters


__all__ = ["load"]
