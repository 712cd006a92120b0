"""The wheel ships every package of convdb (the list in pyproject.toml is explicit)."""

from __future__ import annotations

import tomllib

from ..support import REPO


def test_every_convdb_package_is_listed_in_pyproject():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    on_disk = {
        ".".join(init.parent.relative_to(REPO).parts)
        for init in (REPO / "convdb").rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert on_disk - listed == set(), "add these to [tool.setuptools] packages"
    assert "convdb.migrations" in listed
    assert config["package-dir"]["convdb.migrations"] == "migrations"
