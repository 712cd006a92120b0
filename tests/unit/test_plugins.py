"""The plugin graph and the Plugin contract: pure functions, no database."""

from __future__ import annotations

import importlib.metadata
import itertools

import pytest

from convdb import plugins
from convdb.exceptions import PluginError
from convdb.plugins import Found, Plugin


def found(name: str, *depends_on: str, migrations: str | None = None) -> Found:
    return Found(Plugin(name, migrations, depends_on), name, f"dist-{name}", "1.0")


CORE = found("core", migrations="convdb.migrations")


def names(items) -> list[str]:
    return [f.name for f in items]


def test_core_is_registered_through_its_entry_point():
    entry_points = importlib.metadata.entry_points(group="convdb.plugins")
    assert "convdb.core:plugin" in {ep.value for ep in entry_points if ep.name == "core"}
    core = next(f for f in plugins.discover() if f.name == "core")
    assert core.plugin.migrations == "convdb.migrations"
    assert core.plugin.history_table == "migratehistory"
    types = {"message.received", "message.sent", "message.status"}
    assert set(core.plugin.handlers) == types
    assert set(core.plugin.batch_handlers) == types


def test_core_is_added_when_its_entry_point_is_missing():
    result = plugins.scan_with_core([])
    assert names(result.plugins) == ["core"] and not result.problems
    assert "no 'core' entry point" in result.plugins[0].distribution


def test_order_is_core_first_then_dependencies_then_name():
    graph = [
        CORE,
        found("billing", "crm"),
        found("crm"),
        found("audit"),
        found("zeta", "audit"),
    ]
    expected = ["core", "audit", "crm", "billing", "zeta"]
    for permutation in itertools.permutations(graph):
        assert names(plugins.order(list(permutation))) == expected


def test_missing_dependency_names_both_plugins():
    with pytest.raises(PluginError) as info:
        plugins.order([CORE, found("tags", "core", "labels")])
    assert "plugin 'tags' (dist-tags 1.0) depends on 'labels', which is not installed" in str(
        info.value
    )
    assert info.value.plugin == "tags"


def test_cycle_is_named():
    with pytest.raises(PluginError, match=r"cycle: a -> b -> c -> a"):
        plugins.order([CORE, found("a", "b"), found("b", "c"), found("c", "a"), found("d")])


def test_dependents_are_transitive_and_core_has_everyone():
    graph = [CORE, found("a"), found("b", "a"), found("c", "b"), found("d")]
    assert plugins.dependents(graph, "a") == ["b", "c"]
    assert plugins.dependents(graph, "core") == ["a", "b", "c", "d"]
    assert plugins.dependents(graph, "c") == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(name="Tags"), "name must be"),
        (dict(name="a-b"), "name must be"),
        # a trailing newline once slipped through `^...$` into a history table's name
        (dict(name="tags\n"), "name must be"),
        (dict(name="tags", handlers={"a.b\n": print}), "not an event type"),
        (dict(name="tags", handlers={"a.b": print}, adapters={"std\n": object()}), "adapter"),
        (dict(name="tags", migrations="not a package"), "dotted package name"),
        (dict(name="tags", depends_on="core"), "list of plugin names"),
        (dict(name="tags", depends_on=["tags"]), "cannot depend on itself"),
        (dict(name="tags", handlers={"x.y": 42}), "neither callable"),
        (dict(name="tags", handlers={"bad type!": print}), "not an event type"),
    ],
)
def test_invalid_plugin_objects(kwargs, message):
    with pytest.raises(PluginError, match=message):
        Plugin(**kwargs)


def test_plugin_history_tables_and_string_handlers():
    plugin = Plugin("tags", "x.migrations", handlers={"a.b": "json:dumps", "c.d": len})
    assert plugin.history_table == "migratehistory_tags"
    import json

    assert plugin.resolve_handlers() == {"a.b": json.dumps, "c.d": len}
    broken = Plugin("tags", handlers={"a.b": "convdb_nowhere:handler"})
    with pytest.raises(PluginError, match=r"handlers\['a\.b'\] = 'convdb_nowhere:handler'"):
        broken.resolve_handlers()


def test_batch_handlers_need_a_one_event_handler_and_adapters_a_name():
    with pytest.raises(PluginError, match="without a one-event handler"):
        Plugin("tags", batch_handlers={"a.b": len})
    with pytest.raises(PluginError, match="adapter name 'Bad Name'"):
        Plugin("tags", adapters={"Bad Name": object()})
    plugin = Plugin("tags", handlers={"a.b": len}, batch_handlers={"a.b": "json:dumps"})
    import json

    assert plugin.resolve("batch_handlers") == {"a.b": json.dumps}
