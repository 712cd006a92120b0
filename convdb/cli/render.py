"""Everything the CLI prints as a table or a list of lines, in one place.

:func:`format_table` lays out any rows; the other functions turn library
results (migration status, dry runs, the plugin list) into lines.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from ..migrate.history import listed
from ..plugins import Found, Problem, dependencies

if TYPE_CHECKING:
    from ..migrate import SourceStatus
    from ..migrate.squash import Squashed
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


def _squash_note(st: SourceStatus, name: str) -> list[str]:
    """The lines under an applied squash: what it replaces, and their kept history."""
    lines = [f"      replaces {listed(st.replaces[name])}"]
    covered = st.covers.get(name)
    if covered:
        times = [at for _, at in covered if at]
        span = f", applied {_when(min(times))} to {_when(max(times))}" if times else ""
        lines.append(
            f"      this database ran those modules before ({len(covered)} kept in "
            f"convdb_replaced_migrations{span}): the squash covers them"
        )
    return lines


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
        replaced_by: dict[str, list[str]] = {}
        for squash, names in st.replaces.items():
            for replaced in names:
                replaced_by.setdefault(replaced, []).append(squash)
        for name, at in st.applied:
            if name in st.changed:
                lines.append(
                    f"  [!] {name}  (applied {_when(at)}; CHANGED since: the file no longer "
                    "matches its recorded checksum)"
                )
            elif name in st.missing:
                lines.append(f"  [?] {name}  (applied {_when(at)}; MISSING: the file is gone)")
            elif name in replaced_by:
                by = replaced_by[name]
                more = f" and {len(by) - 1} more" if len(by) > 1 else ""
                lines.append(f"  [x] {name}  (applied {_when(at)}; replaced by {by[0]}{more})")
            else:
                note = "; checksum not recorded yet" if name in st.unrecorded else ""
                lines.append(f"  [x] {name}  (applied {_when(at)}{note})")
            if name in st.replaces:
                lines.extend(_squash_note(st, name))
        for name in st.pending:
            if name in st.out_of_order:
                lines.append(
                    f"  [ ] {name}  (OUT OF ORDER: {st.out_of_order[name]} is already applied)"
                )
            elif name in st.to_record:
                lines.append(
                    f"  [ ] {name}  (to be recorded as applied without running: the modules it "
                    f"replaces are applied: {listed(st.replaces[name])})"
                )
            elif name in st.replaces:
                lines.append(f"  [ ] {name}  (replaces {listed(st.replaces[name])})")
            else:
                lines.append(f"  [ ] {name}")
        for name, squash in st.replaced_pending.items():
            lines.append(f"  [-] {name}  (replaced by {squash}: never runs on its own)")
        for squash, gone in st.unavailable.items():
            lines.append(
                f"  [?] {squash}  (CANNOT BE RECORDED: it replaces {listed(gone)}, neither "
                "applied nor on disk; `convdb migrate` says what to do)"
            )
    return lines


def squash_lines(result: Squashed) -> list[str]:
    """``convdb squash``: what was written and what to do next."""
    replaced = listed([f"{name}.py" for name in result.replaces])
    return [
        f"wrote {result.path}",
        f"  it replaces {listed(result.replaces)} of {result.source}",
        "next:",
        "  1. review it: it runs each replaced module's code, verbatim and in order",
        "  2. convdb migrate: a database that applied them all records it as applied "
        "without running it; a fresh database runs only it",
        "  3. once every database has applied them, delete the replaced files "
        f"({replaced}) and keep the squash",
    ]


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
        if step.recorded:
            lines.append(f"-- {key}: {step.recorded}")
            continue
        lines.append(f"-- {key}")
        lines.extend(f"{sql.rstrip(';')};" for sql in step.statements)
        if step.error:
            lines.append(f"-- {key} FAILED: {step.error}")
    tried = [s for s in result.steps if not s.skipped and not s.recorded]
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
        f"early delivery reports (waiting for their message): {result.early_reports}",
    ]
    return "\n".join(lines)
