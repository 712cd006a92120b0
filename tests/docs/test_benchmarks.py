"""The benchmark table in the docs is the one ``make bench`` wrote, and nowhere copied."""

from __future__ import annotations

from bench.report import Run, generated_part, markdown

from ..support import REPO

PAGE = REPO / "docs" / "benchmarks.md"


def test_the_table_is_the_rendering_of_the_recorded_runs():
    run = Run.from_json(PAGE.with_suffix(".json").read_text(encoding="utf-8"))
    assert run.figures and all(f.runs or f.missing for f in run.figures)
    written = generated_part(PAGE.read_text(encoding="utf-8"))
    assert written == markdown(run), (
        "docs/benchmarks.md's table differs from docs/benchmarks.json: "
        "run `make bench` instead of editing the table"
    )


def test_no_other_page_copies_the_table():
    run = Run.from_json(PAGE.with_suffix(".json").read_text(encoding="utf-8"))
    rows = {f"| {f.name.replace('|', chr(92) + '|')} |" for f in run.figures}
    for path in [REPO / "README.md", *(REPO / "docs").rglob("*.md")]:
        if path == PAGE:
            continue
        text = path.read_text(encoding="utf-8")
        copied = [row for row in rows if row in text]
        assert not copied, f"{path.name} copies rows of the benchmark table: link to it instead"
