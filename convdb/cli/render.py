"""Everything the CLI prints as a table or a list of lines, in one place.

:func:`format_table` lays out any rows; the other functions turn library
results (migration status, dry runs, the plugin list) into lines.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from ..plugins import Found, Problem, dependencies

if TYPE_CHECKING:
    from ..migrate import SourceStatus
    from ..migrate.steps import DryRun
    from ..queue import QueueStats


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return str(value)


def format_table(headers: Sequence[str], rows: Iterable[Sequence]) -> str:
    """Left-aligned columns separated by two spaces, with a rule under the headers."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines.extend(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )
    return "\n".join(lines)


def _when(at) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S") + " UTC" if at else "at an unknown time"


def status_lines(statuses: Iterable[SourceStatus]) -> list[str]:
    """``convdb status``: one header per source, one line per module."""
    lines: list[str] = []
    for st in statuses:
        if not st.installed:
            lines.append(
                f"{st.source}: not installed; {len(st.applied)} applied, history kept in "
                f"{st.history_table}"
            )
            lines.extend(f"  [x] {name}  (applied {_when(at)})" for name, at in st.applied)
            continue
        extra = "".join(
            f", {len(items)} {label}"
            for items, label in ((st.changed, "changed"), (st.missing, "missing"))
            if items
        )
        lines.append(f"{st.source}: {len(st.applied)} applied, {len(st.pending)} pending{extra}")
        for name, at in st.applied:
            if name in st.changed:
                lines.append(
                    f"  [!] {name}  (applied {_when(at)}; CHANGED since: the file no longer "
                    "matches its recorded checksum)"
                )
            elif name in st.missing:
                lines.append(f"  [?] {name}  (applied {_when(at)}; MISSING: the file is gone)")
            else:
                note = "; checksum not recorded yet" if name in st.unrecorded else ""
                lines.append(f"  [x] {name}  (applied {_when(at)}{note})")
        for name in st.pending:
            if name in st.out_of_order:
                lines.append(
                    f"  [ ] {name}  (OUT OF ORDER: {st.out_of_order[name]} is already applied)"
                )
            else:
                lines.append(f"  [ ] {name}")
    return lines


def dry_run_lines(result: DryRun) -> list[str]:
    """``convdb migrate --dry-run``: each module tried, its SQL, and the verdict."""
    if not result.steps:
        return ["dry run: nothing to migrate"]
    lines: list[str] = []
    for step in result.steps:
        key = f"{step.source}/{step.name}"
        if step.skipped:
            lines.append(f"-- {key}: not tried ({step.skipped})")
            continue
        lines.append(f"-- {key}")
        lines.extend(f"{sql.rstrip(';')};" for sql in step.statements)
        if step.error:
            lines.append(f"-- {key} FAILED: {step.error}")
    tried = [s for s in result.steps if not s.skipped]
    skipped = len(result.steps) - len(tried)
    tail = f"; {skipped} non-transactional migration(s) not tried" if skipped else ""
    if result.ok:
        lines.append(
            f"dry run: {len(tried)} migration(s) would apply{tail}; rolled back, nothing recorded"
        )
    return lines


def plugins_table(
    found: Sequence[Found],
    counts: Mapping[str, tuple[int, int]] | None,
) -> str:
    """``convdb plugins``: one row per plugin, in migration order."""
    rows = []
    for f in found:
        p = f.plugin
        deps = ", ".join(d for d in dependencies(f)) or "-"
        handlers = ", ".join(sorted(p.handlers)) or "-"
        applied, pending = (counts or {}).get(f.name, (None, None))
        if not p.migrations:
            applied = pending = "-"
        rows.append(
            [
                f.name,
                f.origin,
                p.migrations or "-",
                deps,
                handlers,
                "?" if applied is None else applied,
                "?" if pending is None else pending,
            ]
        )
    headers = ["plugin", "distribution", "migrations", "after", "handlers", "applied", "pending"]
    return format_table(headers, rows)


def problem_lines(problems: Iterable[Problem]) -> list[str]:
    lines = []
    for problem in problems:
        lines.append(f"not loaded: {problem.message}")
        lines.append(f"  Hint: {problem.hint}")
    return lines


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.1f}s"


def queue_stats_text(result: QueueStats) -> str:
    """The queue statistics as text: a table by event type, then the backlog."""
    statuses = ("pending", "processing", "done", "dead")
    table: dict[str, dict[str, int]] = {}
    for event_type, status, count in result.by_type:
        table.setdefault(event_type, dict.fromkeys(statuses, 0))[status] = count
    rows = [[t, *(counts[s] for s in statuses)] for t, counts in sorted(table.items())]
    rows.append(["(all)", *(result.count(s) for s in statuses)])
    lines = [
        format_table(["event type", *statuses], rows),
        "",
        "oldest due pending event: "
        + (
            "none"
            if result.oldest_pending_seconds is None
            else f"received {_age(result.oldest_pending_seconds)} ago"
        ),
        f"retry backlog: {result.retrying} pending after a failed attempt, "
        f"{result.scheduled} scheduled for later",
        f"expired leases (to be reclaimed): {result.expired_leases}",
    ]
    return "\n".join(lines)
