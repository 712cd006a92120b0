"""docs/plugins.md's minimal plugin ("Writing a plugin") is real: it installs and migrates."""

from __future__ import annotations

import re

from ..plugin_helpers import history, pip_install, plugin_env, query
from ..support import REPO, run_cli


def doc_blocks() -> dict[str, list[str]]:
    text = (REPO / "docs" / "plugins.md").read_text()
    section = text[text.index("## Writing a plugin") : text.index("Rules of the road")]
    blocks: dict[str, list[str]] = {}
    for lang, body in re.findall(r"```(\w*)\n(.*?)```", section, flags=re.S):
        blocks.setdefault(lang, []).append(body)
    return blocks


def test_documented_minimal_plugin_installs_and_migrates(tmp_path, empty_db_url):
    blocks = doc_blocks()
    (pyproject,) = blocks["toml"]
    init, migration = blocks["python"]
    folder = tmp_path / "convdb-notes"
    (folder / "convdb_notes" / "migrations").mkdir(parents=True)
    (folder / "pyproject.toml").write_text(pyproject)
    (folder / "convdb_notes" / "__init__.py").write_text(init)
    (folder / "convdb_notes" / "migrations" / "__init__.py").write_text("")
    (folder / "convdb_notes" / "migrations" / "001_notes.py").write_text(migration)
    site = pip_install(folder, tmp_path / "site")
    env = plugin_env(empty_db_url, site)

    listing = run_cli("convdb", "plugins", env=env, check=True).stdout
    assert "convdb-notes 0.1.0" in listing and "note.added" in listing
    out = run_cli("convdb", "migrate", env=env, check=True).stdout
    assert out.rstrip().splitlines()[-2] == "notes: applied 001_notes"
    assert history(empty_db_url, "migratehistory_notes") == ["001_notes"]
    fk = query(
        empty_db_url,
        "SELECT confrelid::regclass::text FROM pg_constraint "
        "WHERE conrelid = 'notes'::regclass AND contype = 'f'",
    )
    assert fk == [("conversations",)]
    created = run_cli("convdb", "create", "add_author", "--plugin", "notes", env=env, check=True)
    assert "convdb_notes/migrations/002_add_author.py" in created.stdout
