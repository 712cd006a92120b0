"""Broken plugins are reported with their name, distribution and what to do; never a traceback.

Every plugin here is a real distribution installed with pip into its own
folder, seen by ``convdb`` subprocesses (and, for handlers, by this process)
through the path.
"""

from __future__ import annotations

import pytest

from convdb import plugins
from convdb.exceptions import PluginError

from ..plugin_helpers import pip_install, plugin_env, public_tables, write_plugin
from ..support import run_cli

BROKEN = {
    "import_fails": dict(init="import convdb_no_such_module_anywhere\n"),
    "not_a_plugin": dict(init="plugin = {'name': 'not_a_plugin'}\n"),
    "bad_fields": dict(
        init="from convdb.plugins import Plugin\nplugin = Plugin(name='Bad Name')\n"
    ),
    "no_migrations": dict(
        init="from convdb.plugins import Plugin\n"
        "plugin = Plugin(name='no_migrations', migrations='convdb_no_migrations_test.nope')\n"
    ),
}
EXPECTED = {
    "import_fails": "fails to import: ModuleNotFoundError",
    "not_a_plugin": "is a dict, not a convdb.plugins.Plugin",
    "bad_fields": "name must be 1-48 lowercase letters",
    "no_migrations": "migrations package 'convdb_no_migrations_test.nope' cannot be found",
}


@pytest.fixture(scope="module")
def broken_sites(tmp_path_factory):
    root = tmp_path_factory.mktemp("broken")
    return {
        name: pip_install(write_plugin(root, name, **kwargs), root / f"site-{name}")
        for name, kwargs in BROKEN.items()
    }


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_broken_plugin_is_named_with_its_distribution(kind, broken_sites, empty_db_url):
    env = plugin_env(empty_db_url, broken_sites[kind])
    result = run_cli("convdb", "migrate", env=env)
    assert result.returncode == 1
    assert f"plugin '{kind}'" in result.stderr
    assert f"distribution convdb-{kind}-test 1.2.3" in result.stderr
    assert EXPECTED[kind] in result.stderr
    assert "Hint:" in result.stderr
    assert "Traceback" not in result.stderr
    assert public_tables(empty_db_url) == set()
    listing = run_cli("convdb", "plugins", env=env)
    assert listing.returncode == 1
    assert listing.stdout.splitlines()[2].startswith("core ")
    assert f"not loaded: plugin '{kind}'" in listing.stderr


def test_two_plugins_with_one_name(tmp_path, empty_db_url):
    site = tmp_path / "site"
    migrations = {"001_x": "def migrate(migrator, database, *, fake=False):\n    pass\n"}
    pip_install(write_plugin(tmp_path, "twin", migrations=migrations), site)
    pip_install(write_plugin(tmp_path, "twin", migrations=migrations, dist="convdb-twin-b"), site)
    result = run_cli("convdb", "migrate", env=plugin_env(empty_db_url, site))
    assert result.returncode == 1
    assert "two plugins are named 'twin'" in result.stderr
    assert "convdb-twin-test 1.2.3" in result.stderr and "convdb-twin-b 1.2.3" in result.stderr
    assert public_tables(empty_db_url) == set()


def test_a_plugin_cannot_be_named_core(tmp_path, empty_db_url):
    site = pip_install(write_plugin(tmp_path, "core", depends_on=()), tmp_path / "site")
    result = run_cli("convdb", "status", env=plugin_env(empty_db_url, site))
    assert result.returncode == 1
    assert "two plugins are named 'core'" in result.stderr


@pytest.fixture
def on_path(monkeypatch):
    """Put a pip --target folder on this process's path (importlib.metadata reads it)."""

    def add(site):
        monkeypatch.syspath_prepend(str(site))

    return add


def test_handlers_of_installed_plugins_are_loaded(tmp_path, on_path):
    site = pip_install(
        write_plugin(tmp_path, "echoer", handlers={"echo.said": "event"}), tmp_path / "site"
    )
    on_path(site)
    handlers = plugins.load_handlers()
    assert handlers["echo.said"]("the event") == "the event"
    assert {"message.received", "message.sent"} <= handlers.keys()  # the core's, by name


def test_two_plugins_claiming_one_event_type(tmp_path, on_path):
    site = tmp_path / "site"
    pip_install(write_plugin(tmp_path, "first", handlers={"shared.event": "1"}), site)
    pip_install(write_plugin(tmp_path, "second", handlers={"shared.event": "2"}), site)
    on_path(site)
    with pytest.raises(PluginError) as info:
        plugins.load_handlers()
    message = str(info.value)
    assert "'first' (convdb-first-test 1.2.3)" in message
    assert "'second' (convdb-second-test 1.2.3)" in message
    assert "'shared.event'" in message


def test_a_plugin_claiming_a_core_event_type(tmp_path, on_path):
    site = pip_install(
        write_plugin(tmp_path, "thief", handlers={"message.received": "None"}), tmp_path / "site"
    )
    on_path(site)
    with pytest.raises(PluginError, match=r"'core' .* and 'thief' .* 'message\.received'"):
        plugins.load_handlers()
