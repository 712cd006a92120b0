"""The queue page's throughput chart as SVG geometry, drawn on the server.

No script runs in the console (its Content-Security-Policy allows none), so
the chart is plain SVG built here and written by the template: one polyline
per series and one circle per minute, each with a ``<title>`` that the
browser shows on hover (a tooltip without JavaScript).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 12, 28

SERIES = (("received", "received"), ("done", "done"), ("dead", "dead"))


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    value: int
    label: str


@dataclass(frozen=True)
class Line:
    name: str
    css: str
    points: list[Point]

    @property
    def polyline(self) -> str:
        return " ".join(f"{p.x:.1f},{p.y:.1f}" for p in self.points)

    @property
    def total(self) -> int:
        return sum(p.value for p in self.points)


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    lines: list[Line]
    y_ticks: list[tuple[float, int]]  # (y, value)
    x_ticks: list[tuple[float, str]]  # (x, "HH:MM")
    top: int
    bottom: int
    left: int
    right: int


#: Tick steps: 1, 2, 5 times a power of ten, and 25, 250, ...
_TICKS = sorted({m * 10**e for e in range(13) for m in (1, 2, 5)} | {25 * 10**e for e in range(12)})


def _nice_max(value: int) -> int:
    """The axis top: four equal whole ticks from :data:`_TICKS` that reach ``value``."""
    return 4 * next((t for t in _TICKS if 4 * t >= value), _TICKS[-1])


def build(minutes: list[dt.datetime], series: dict[str, list[int]]) -> Chart:
    """Geometry for ``series`` (name -> one count per minute of ``minutes``)."""
    top_value = _nice_max(max((max(v, default=0) for v in series.values()), default=0))
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM
    count = max(len(minutes), 1)

    def x(i: int) -> float:
        return LEFT + (plot_w * i / (count - 1) if count > 1 else plot_w / 2)

    def y(value: int) -> float:
        return TOP + plot_h - plot_h * value / top_value

    lines = []
    for name, css in SERIES:
        values = series.get(name, [])
        points = [
            Point(x(i), y(v), v, f"{minutes[i]:%H:%M} UTC: {v} {name}")
            for i, v in enumerate(values)
        ]
        lines.append(Line(name, css, points))
    y_ticks = [(y(top_value * k // 4), top_value * k // 4) for k in range(5)]
    x_ticks = [(x(i), f"{minutes[i]:%H:%M}") for i in range(0, len(minutes), 10)]
    if minutes and (len(minutes) - 1) % 10:
        x_ticks.append((x(len(minutes) - 1), f"{minutes[-1]:%H:%M}"))
    return Chart(WIDTH, HEIGHT, lines, y_ticks, x_ticks, TOP, HEIGHT - BOTTOM, LEFT, WIDTH - RIGHT)


__all__ = ["Chart", "Line", "Point", "build"]
