"""Squash bookkeeping and schema text as pure functions: REPLACES, the plan, literals."""

from __future__ import annotations

import ast

import pytest

from convdb.exceptions import MigrationError
from convdb.migrate.history import plan_squashes
from convdb.migrate.schema import unqualify_single_relation
from convdb.migrate.sources import declared_replaces, new_module_filename
from convdb.migrate.squash import literal

ABC = ["001_a", "002_b", "003_c"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('REPLACES = ["001_a", "002_b"]\n', ["001_a", "002_b"]),
        ('REPLACES = ("001_a",)\n', ["001_a"]),
        ('REPLACES: list[str] = ["001_a"]\n', ["001_a"]),
        ("def migrate(migrator, database, *, fake=False):\n    REPLACES = ['001_a']\n", None),
        ("TRANSACTIONAL = True\n", None),
        ("this is not python (", None),
    ],
)
def test_replaces_is_read_from_the_top_level(text, expected):
    assert declared_replaces(text, "009_x") == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("REPLACES = []", "non-empty list"),
        ("REPLACES = NAMES", "written literally"),
        ('REPLACES = ["001_a", OTHER]', "written literally"),
        ('REPLACES = "001_a"', "written literally"),
        ('REPLACES = ["001_a.py"]', "not a module name"),
        ('REPLACES = ["001_a\\n"]', "not a module name"),
        ('REPLACES = ["1_a"]', "not a module name"),
        ('REPLACES = ["001_a", "001_a"]', "twice"),
        ('REPLACES = ["009_x", "001_a"]', "itself"),
    ],
)
def test_malformed_replaces_is_an_error_naming_the_module(text, message):
    with pytest.raises(MigrationError, match=message) as info:
        declared_replaces(text, "009_x")
    assert "REPLACES in 009_x" in str(info.value)


def test_plan_fresh_database_runs_the_squash_only():
    plan = plan_squashes([*ABC, "003_sq", "004_d"], {"003_sq": ABC}, [])
    assert plan.record == [] and plan.first == [] and not plan.unavailable
    assert plan.covered_by == dict.fromkeys(ABC, "003_sq")


def test_plan_all_replaced_applied_records_every_squash_of_the_set():
    squashes = {"001_part1": ABC, "002_part2": ABC}
    plan = plan_squashes(["001_part1", "002_part2", "004_d"], squashes, ABC)
    assert plan.record == ["001_part1", "002_part2"] and plan.first == []


def test_plan_some_applied_runs_the_missing_ones_first():
    plan = plan_squashes([*ABC, "003_sq"], {"003_sq": ABC}, ["001_a"])
    assert plan.first == ["002_b", "003_c"] and plan.record == ["003_sq"]


def test_plan_some_applied_and_the_rest_gone_is_unavailable():
    plan = plan_squashes(["001_a", "003_sq"], {"003_sq": ABC}, ["001_a"])
    assert plan.unavailable == {"003_sq": ["002_b", "003_c"]}
    assert plan.record == [] and plan.first == []


def test_plan_applied_squash_needs_nothing():
    plan = plan_squashes(["003_sq", "004_d"], {"003_sq": ABC}, ["003_sq"])
    assert plan.record == [] and plan.first == [] and not plan.unavailable


def test_plan_part_of_a_set_rolled_back_runs_again():
    """The replaced rows were moved out when the set was recorded: only the
    history table counts, so a rolled-back part of the baseline runs again."""
    squashes = {"001_part1": ABC, "002_part2": ABC}
    plan = plan_squashes(["001_part1", "002_part2"], squashes, ["001_part1"])
    assert plan.record == [] and plan.first == []


@pytest.mark.parametrize(
    "text",
    [
        'def migrate(m, d, *, fake=False):\n    m.sql("""SELECT 1""")\n',
        "x = '''a'''\ny = \"\"\"b\"\"\"\n",
        "PATTERN = r'\\d+\\s'  # backslashes\n",
        "ends with a backslash \\",
        'ends with a quote "',
        "",
    ],
)
def test_literal_gives_the_text_back_exactly(text):
    assert eval(literal(text)) == text
    ast.parse(f"X = {literal(text)}\n")


def test_literal_shows_the_lines_as_they_are():
    text = '"""Docstring."""\n\nSQL = """\nSELECT 1\n"""\n'
    assert literal(text) == f"r'''\n{text}'''[1:]"


def test_postgres_15_view_text_reads_like_16():
    pg15 = """ SELECT c.id AS conversation_id,
    c.customer_id,
    c.last_message_at
   FROM conversations c;"""
    pg16 = """ SELECT id AS conversation_id,
    customer_id,
    last_message_at
   FROM conversations c;"""
    assert unqualify_single_relation(pg15) == pg16


def test_view_text_keeps_subqueries_and_joins_qualified():
    pg15 = """ SELECT m.id,
        CASE
            WHEN m.email_body_id IS NOT NULL THEN ( SELECT eb.raw
               FROM email_bodies eb
              WHERE eb.id = m.email_body_id)
            ELSE 'm.x'::text
        END AS body_text
   FROM messages m;"""
    expected = """ SELECT id,
        CASE
            WHEN email_body_id IS NOT NULL THEN ( SELECT eb.raw
               FROM email_bodies eb
              WHERE eb.id = m.email_body_id)
            ELSE 'm.x'::text
        END AS body_text
   FROM messages m;"""
    assert unqualify_single_relation(pg15) == expected
    joined = " SELECT a.x,\n    b.y\n   FROM a\n     JOIN b ON a.id = b.id;"
    assert unqualify_single_relation(joined) == joined


def test_new_module_names_fit_the_file_system(tmp_path):
    assert new_module_filename(tmp_path, 18, "add_notes", source="core") == "018_add_notes.py"
    with pytest.raises(MigrationError, match=r"too long.*at most 248 characters") as info:
        new_module_filename(tmp_path, 18, "x" * 300, source="core")
    assert "x" * 100 not in str(info.value)  # the name is shortened in the message
    for bad in ("add notes", "add.notes", "notes\n", "ünïcode"):
        with pytest.raises(MigrationError, match="letters, digits and underscores"):
            new_module_filename(tmp_path, 18, bad, source="core")
