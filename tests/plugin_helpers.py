"""Real plugin packages for the tests: written to a folder, installed with pip.

A plugin is written as a complete distribution (``pyproject.toml`` with an
entry point in ``convdb.plugins``, a package, a ``migrations`` subpackage)
and installed *non-editable* with ``pip install --no-deps --target DIR``, so
the shared virtualenv is never touched: a process sees the plugin only when
``DIR`` is on its ``PYTHONPATH`` (or ``sys.path``), where
``importlib.metadata`` finds its ``.dist-info`` and entry point.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
import uuid
from pathlib import Path

import psycopg2

from .support import BIN, REPO

TAGS_SOURCE = REPO / "plugins" / "convdb-tags"


def write_plugin(
    root: Path,
    name: str,
    *,
    migrations: dict[str, str] | None = None,
    depends_on: tuple[str, ...] = ("core",),
    handlers: dict[str, str] | None = None,
    init: str | None = None,
    dist: str | None = None,
) -> Path:
    """Write the distribution ``convdb-<name>-test`` (package ``convdb_<name>_test``).

    ``migrations`` maps module names (``001_x``) to their source; ``handlers``
    maps event types to the source of a function body's return expression.
    ``init`` replaces the package's ``__init__.py`` entirely.
    """
    dist = dist or f"convdb-{name}-test"
    package = dist.replace("-", "_")
    folder = root / dist
    (folder / package / "migrations").mkdir(parents=True)
    (folder / "pyproject.toml").write_text(
        textwrap.dedent(f"""
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "{dist}"
        version = "1.2.3"

        [project.entry-points."convdb.plugins"]
        {name} = "{package}:plugin"

        [tool.setuptools]
        packages = ["{package}", "{package}.migrations"]
    """)
    )
    if init is None:
        handler_defs = "".join(
            f"\ndef handle_{i}(event):\n    return {body}\n"
            for i, body in enumerate((handlers or {}).values())
        )
        handler_map = ", ".join(f"{event!r}: handle_{i}" for i, event in enumerate(handlers or {}))
        init = (
            "from convdb.plugins import Plugin\n"
            f"{handler_defs}\n"
            f"plugin = Plugin(name={name!r}, migrations={package + '.migrations'!r}, "
            f"depends_on={list(depends_on)!r}, handlers={{{handler_map}}})\n"
        )
    (folder / package / "__init__.py").write_text(init)
    (folder / package / "migrations" / "__init__.py").write_text("")
    for module, text in (migrations or {}).items():
        (folder / package / "migrations" / f"{module}.py").write_text(textwrap.dedent(text))
    return folder


def pip_install(source: Path, target: Path) -> Path:
    """``pip install --no-deps --target target source`` (not editable, no network)."""
    build = target.parent / f"src-{source.name}-{uuid.uuid4().hex[:8]}"
    # build from a copy: setuptools writes build/ and *.egg-info next to the sources
    shutil.copytree(
        source, build, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    result = subprocess.run(
        [
            str(BIN / "pip"),
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--disable-pip-version-check",
            "--target",
            str(target),
            str(build),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        raise AssertionError(f"pip install {source} failed:\n{result.stdout}\n{result.stderr}")
    return target


def plugin_env(url: str, *targets: Path) -> dict[str, str]:
    """Environment for ``run_cli``: the database, and the plugins installed in ``targets``."""
    return {"DATABASE_URL": url, "PYTHONPATH": os.pathsep.join(str(t) for t in targets)}


def query(url: str, sql: str, params=None) -> list[tuple]:
    """Run ``sql`` in its own committed transaction; the rows it returns."""
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            rows = cur.fetchall() if cur.description else []
        conn.commit()
        return rows
    finally:
        conn.close()


def public_tables(url: str) -> set[str]:
    return {r[0] for r in query(url, "SELECT tablename FROM pg_tables WHERE schemaname='public'")}


def history(url: str, table: str) -> list[str]:
    return [r[0] for r in query(url, f'SELECT name FROM "{table}" ORDER BY id')]


def lock_is_free(url: str) -> bool:
    from convdb.migrate import MIGRATION_LOCK_KEY

    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
            return cur.fetchone()[0]
    finally:
        conn.close()


def package_source(root: Path, monkeypatch, modules: dict[str, str], name: str = "src"):
    """A throwaway migrations package on ``sys.path`` as a :class:`convdb.migrate.Source`.

    The package name is unique, so no module cache is shared between tests.
    """
    from convdb.migrate import Source

    package = f"convdb_testpkg_{uuid.uuid4().hex[:10]}"
    folder = root / package
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text("")
    for module, text in modules.items():
        (folder / f"{module}.py").write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(root))
    return Source(name, package, f"migratehistory_{name}")


def sql_module(up: str, down: str = "", *, transactional: bool = True) -> str:
    """Source of a migration module running ``up`` (and ``down`` on rollback) as raw SQL."""
    flag = "" if transactional else "TRANSACTIONAL = False\n"
    return (
        f"from convdb.sqlutil import run_sql\n{flag}\n"
        f"def migrate(migrator, database, *, fake=False):\n    run_sql(migrator, {up!r})\n\n"
        f"def rollback(migrator, database, *, fake=False):\n    run_sql(migrator, {down!r})\n"
        if down
        else f"from convdb.sqlutil import run_sql\n{flag}\n"
        f"def migrate(migrator, database, *, fake=False):\n    run_sql(migrator, {up!r})\n"
    )
