"""Figures, their statistics, and the one table ``make bench`` prints and writes."""

from __future__ import annotations

import datetime as dt
import json
import os
import statistics
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from convdb.cli.render import format_table


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of a non-empty sample."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


@dataclass
class Figure:
    """One row: a measured value per run, summarized as the median with min-max.

    ``held`` compares the median with the target (``at_most`` or
    ``at_least``); ``missing`` replaces the value by "n/a (reason)".
    """

    name: str
    unit: str
    runs: list[float] = field(default_factory=list)
    at_most: float | None = None
    at_least: float | None = None
    target_text: str = ""
    missing: str | None = None
    note: str = ""
    info: bool = False  # no target: shown for scale, held is "-"

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    @property
    def held(self) -> bool | None:
        if self.missing or not self.runs or self.info:
            return None
        if self.at_most is not None and self.median > self.at_most:
            return False
        return not (self.at_least is not None and self.median < self.at_least)

    def value_text(self) -> str:
        if self.missing:
            return f"n/a ({self.missing})"
        if not self.runs:
            return "n/a (not run)"
        fmt = _fmt(self.unit)
        text = fmt(self.median)
        if len(self.runs) > 1:
            text += f" ({fmt(min(self.runs))}-{fmt(max(self.runs))}, {len(self.runs)} runs)"
        return text + (f"; {self.note}" if self.note else "")

    def row(self) -> list[str]:
        held = {True: "yes", False: "NO", None: "-"}[self.held]
        return [self.name, self.value_text(), self.target_text, held]


def _fmt(unit: str):
    def fmt(value: float) -> str:
        if unit == "ms":
            return f"{value:.2f} ms" if value < 10 else f"{value:.0f} ms"
        if unit == "s":
            return f"{value:.2f} s"
        if unit == "/s":
            return f"{value:,.0f}/s"
        if unit == "x":
            return f"{value:.2f}x"
        if unit == "MB":
            return f"{value:.0f} MB"
        if unit == "%":
            return f"{value:+.0f}%"
        return f"{value:g} {unit}".strip()

    return fmt


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def page_rows(
    pages: dict[str, list[float]], label: str, baseline=None, baseline_label: str = ""
) -> list[Figure]:
    figures = []
    for page, title in (("inbox", "inbox page"), ("conversation", "conversation page")):
        for q, limit in (("p50", 2.0), ("p95", 5.0)):
            figures.append(
                Figure(
                    f"{title} {q}, {label}",
                    "ms",
                    runs=pages[f"{page} {q}"],
                    at_most=limit,
                    target_text=f"≤ {limit:g} ms",
                )
            )
        if baseline is not None:
            ratios = [
                big / small
                for big, small in zip(pages[f"{page} p50"], baseline[f"{page} p50"], strict=True)
            ]
            figures.append(
                Figure(
                    f"{title} p50, {label} / {baseline_label}",
                    "x",
                    runs=ratios,
                    at_most=1.5,
                    target_text="≤ 1.5x",
                )
            )
    return figures


HEADER = ["figure", "value: median (min-max)", "target", "held"]


def table(figures: Sequence[Figure]) -> str:
    return format_table(HEADER, [f.row() for f in figures])


@dataclass
class Run:
    """One ``make bench`` run: its figures and where they were measured."""

    figures: list[Figure]
    server_version: str
    notes: list[str]
    date: str = field(default_factory=lambda: f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC")
    cores: int = field(default_factory=lambda: os.cpu_count() or 0)

    def to_json(self) -> str:
        data = asdict(self)
        return json.dumps(data, indent=1, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Run:
        data = json.loads(text)
        data["figures"] = [Figure(**f) for f in data["figures"]]
        return cls(**data)


def markdown(run: Run) -> str:
    """The benchmarks page's generated part: when and where, the table, the notes."""
    lines = [
        "# convdb benchmarks",
        "",
        "Written by `make bench` (`python -m bench`) with the raw runs beside it in",
        "`benchmarks.json`; rerun it to refresh both. A test fails when this table",
        "is not the rendering of that file.",
        "",
        f"- date: {run.date}",
        f"- PostgreSQL: {run.server_version}",
        f"- machine: {run.cores} cores",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
    ]
    for figure in run.figures:
        cells = [c.replace("|", "\\|") for c in figure.row()]
        lines.append("| " + " | ".join(cells) + " |")
    if run.notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in run.notes]
    return "\n".join(lines) + "\n"


def generated_part(text: str) -> str:
    """What ``make bench`` wrote of a benchmarks page (everything before the analysis)."""
    if ANALYSIS_MARKER in text:
        text = text[: text.index(ANALYSIS_MARKER)]
    return text.rstrip("\n") + "\n"


#: Everything after this line in the benchmarks page is written by hand (what
#: limits each missed figure) and kept when the table is rewritten.
ANALYSIS_MARKER = "<!-- analysis: kept across runs -->"


def write(path: Path, run: Run) -> None:
    """The page at ``path`` (keeping a hand-written analysis that follows the marker)
    and the raw runs beside it (``path`` with ``.json``)."""
    kept = ""
    if path.exists():
        old = path.read_text(encoding="utf-8")
        if ANALYSIS_MARKER in old:
            kept = "\n" + old[old.index(ANALYSIS_MARKER) :]
    path.write_text(markdown(run) + kept, encoding="utf-8")
    path.with_suffix(".json").write_text(run.to_json(), encoding="utf-8")
