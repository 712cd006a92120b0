"""Cases other tools get wrong: same numbers, out-of-order modules, vanished files."""

from __future__ import annotations

import pytest

from convdb import migrate as migrate_lib
from convdb.cli.render import status_lines
from convdb.exceptions import MigrationError

from ..plugin_helpers import history, package_source, public_tables
from ..plugin_helpers import sql_module as sql


def quiet(_):
    pass


def table(name: str) -> str:
    return sql(f"CREATE TABLE {name} (id int)", f"DROP TABLE {name}")


def test_lower_number_after_a_higher_one_is_refused(empty_db_url, tmp_path, monkeypatch):
    source = package_source(tmp_path, monkeypatch, {"001_a": table("a"), "003_c": table("c")})
    migrate_lib.run(empty_db_url, sources=[source], echo=quiet)
    (source.directory / "002_b.py").write_text(table("b"))
    (source.directory / "004_d.py").write_text(table("d"))
    with pytest.raises(MigrationError) as info:
        migrate_lib.run(empty_db_url, sources=[source], echo=quiet)
    message = str(info.value)
    assert "src/002_b is pending but src/003_c, numbered higher, is already applied" in message
    assert "Renumber 002_b.py after 003" in message
    assert history(empty_db_url, "migratehistory_src") == ["001_a", "003_c"]
    assert "d" not in public_tables(empty_db_url)  # refused before anything ran
    (status,) = migrate_lib.status(empty_db_url, sources=[source])
    assert status.out_of_order == {"002_b": "003_c"}
    assert "  [ ] 002_b  (OUT OF ORDER: 003_c is already applied)" in status_lines([status])
    assert "  [ ] 004_d" in status_lines([status])
    # renumbered, it applies
    (source.directory / "002_b.py").rename(source.directory / "005_b.py")
    applied = migrate_lib.run(empty_db_url, sources=[source], echo=quiet)
    assert [n for _, n in applied] == ["004_d", "005_b"]


def test_same_number_twice_is_refused_before_anything_runs(empty_db_url, tmp_path, monkeypatch):
    first = package_source(tmp_path, monkeypatch, {"001_a": table("a")}, name="first")
    second = package_source(
        tmp_path,
        monkeypatch,
        {"001_x": table("x"), "002_y": table("y"), "002_z": table("z")},
        name="second",
    )
    with pytest.raises(MigrationError, match="002_y and 002_z share the number 002"):
        migrate_lib.run(empty_db_url, sources=[first, second], echo=quiet)
    assert public_tables(empty_db_url) == set()


def test_applied_module_whose_file_is_gone(empty_db_url, tmp_path, monkeypatch):
    source = package_source(tmp_path, monkeypatch, {"001_a": table("a"), "002_b": table("b")})
    migrate_lib.run(empty_db_url, sources=[source], echo=quiet)
    source.path("002_b").unlink()
    (source.directory / "003_c.py").write_text(table("c"))
    with pytest.raises(MigrationError, match=r"src/002_b is applied but .*002_b\.py is gone"):
        migrate_lib.run(empty_db_url, sources=[source], echo=quiet)
    (status,) = migrate_lib.status(empty_db_url, sources=[source])
    assert status.missing == ["002_b"]
    assert any("[?] 002_b" in line and "MISSING" in line for line in status_lines([status]))
    with pytest.raises(MigrationError, match="cannot be rolled back"):
        migrate_lib.rollback(empty_db_url, source=source, echo=quiet)
    assert "c" not in public_tables(empty_db_url)
