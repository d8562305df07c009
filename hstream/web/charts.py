"""Two SVG charts, drawn on the server: the attempts on a timeline, one lane per worker slot
(a Gantt chart), and the job's input, shuffle and output rates in MB/s over time on one axis
(the MapReduce paper's Figure 3).

Both share the time axis: seconds since the job was submitted. Every text is escaped.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from html import escape

from hstream.cluster.history import SERIES, AttemptRecord, JobRecord

WIDTH = 1100
LEFT = 150
RIGHT = 20
PLOT = WIDTH - LEFT - RIGHT
LANE = 12
LANE_GAP = 2
WORKER_GAP = 8
AXIS = 30
RATE_HEIGHT = 240
COLORS = {"input": "#2f6fb3", "shuffle": "#3a9b4a", "output": "#c4452c"}
LEGEND = (("map", "map"), ("reduce", "reduce"), ("failed", "failed"), ("killed", "killed"),
          ("lost", "lost with its worker"), ("running", "running"))


class Axis:
    """Seconds since submission -> x pixels."""

    def __init__(self, span: float) -> None:
        self.span = max(span, 1.0)

    def x(self, seconds: float) -> float:
        return LEFT + max(0.0, min(seconds, self.span)) / self.span * PLOT

    def ticks(self) -> list[float]:
        step = nice_step(self.span / 8)
        return [i * step for i in range(int(self.span / step) + 1)]

    def svg(self, y: float) -> str:
        parts = [f'<path class="axis" d="M{LEFT},{y:.1f}H{LEFT + PLOT}"/>']
        for t in self.ticks():
            x = self.x(t)
            parts.append(f'<path class="tick" d="M{x:.1f},{y:.1f}v4"/>'
                         f'<text x="{x:.1f}" y="{y + 16:.1f}" text-anchor="middle">'
                         f'{seconds_label(t)}</text>')
        return "".join(parts)


def nice_step(raw: float) -> float:
    """1, 2 or 5 times a power of ten, at least `raw`."""
    if raw <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1.0, 2.0, 5.0, 10.0) if m * power >= raw)


def seconds_label(t: float) -> str:
    if t >= 3600:
        return f"{t / 3600:g}h"
    if t >= 120:
        return f"{t / 60:g}m"
    return f"{t:g}s"


# -- the timeline ---------------------------------------------------------------------------


def lanes(attempts: list[AttemptRecord], now: float) -> dict[str, list[list[AttemptRecord]]]:
    """Per worker, its attempts in lanes that never overlap: one lane per slot in use."""
    by_worker: dict[str, list[list[AttemptRecord]]] = defaultdict(list)
    ends: dict[str, list[float]] = defaultdict(list)
    for a in sorted(attempts, key=lambda a: (a.start, a.id)):
        free = ends[a.worker]
        lane = next((i for i, end in enumerate(free) if end <= a.start), None)
        if lane is None:
            lane = len(free)
            free.append(0.0)
            by_worker[a.worker].append([])
        free[lane] = a.end or now
        by_worker[a.worker][lane].append(a)
    return dict(sorted(by_worker.items()))


def timeline(record: JobRecord, now: float) -> str:
    """The Gantt chart: a bar per attempt (a link to its page), coloured by kind and outcome."""
    axis = Axis(record.ended(now) - record.submitted)
    body: list[str] = []
    y = 10.0
    for worker, rows in lanes(list(record.attempts.values()), record.ended(now)).items():
        host = rows[0][0].host
        body.append(f'<text class="worker" x="{LEFT - 6}" y="{y + LANE - 2:.1f}" '
                    f'text-anchor="end">{escape(worker)} ({escape(host)})</text>')
        for row in rows:
            body += [_bar(record, a, axis, y, now) for a in row]
            y += LANE + LANE_GAP
        y += WORKER_GAP
    height = y + AXIS
    return (f'<svg id="timeline" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" '
            f'height="{height:.0f}" viewBox="0 0 {WIDTH} {height:.0f}" role="img" '
            f'aria-label="attempts over time, one lane per worker slot">'
            + "".join(body) + axis.svg(y) + "</svg>")


def _bar(record: JobRecord, a: AttemptRecord, axis: Axis, y: float, now: float) -> str:
    x0 = axis.x(a.start - record.submitted)
    x1 = max(axis.x((a.end or record.ended(now)) - record.submitted) - 1, x0 + 1)  # a gap
    kind = a.kind if a.outcome in ("succeeded", "running") else a.outcome
    label = (f"{a.id} on {a.worker} ({a.host}): {a.outcome}, "
             f"{(a.end or record.ended(now)) - a.start:.1f} s")
    return (f'<a href="/job/{escape(record.id)}/attempt/{escape(a.id)}">'
            f'<path class="bar {kind}{" running" if a.outcome == "running" else ""}" '
            f'd="M{x0:.1f},{y:.1f}H{x1:.1f}v{LANE}H{x0:.1f}z">'
            f"<title>{escape(label)}</title></path></a>")


def legend() -> str:
    items = "".join(f'<span class="key"><svg width="14" height="10"><path class="bar {cls}" '
                    f'd="M0,0H14v10H0z"/></svg> {escape(text)}</span>' for cls, text in LEGEND)
    return f'<div class="legend">{items}</div>'


# -- the rates ------------------------------------------------------------------------------


def rates(record: JobRecord, now: float) -> str:
    """Input read, shuffle fetched and output written, MB/s over time, on one axis."""
    axis = Axis(record.ended(now) - record.submitted)
    step = record.rates.step
    series = {name: record.rates.per_second(name) for name in SERIES}
    top = nice_step(max((max(v, default=0.0) for v in series.values()), default=0.0)
                    / 1e6 / 4) * 4 or 1.0
    plot_h = RATE_HEIGHT - AXIS - 10

    def y(mb: float) -> float:
        return 10 + plot_h * (1 - min(mb / top, 1.0))

    grid = "".join(f'<path class="grid" d="M{LEFT},{y(v):.1f}H{LEFT + PLOT}"/>'
                   f'<text x="{LEFT - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:g}</text>'
                   for v in (top * i / 4 for i in range(5)))
    paths = "".join(_series_path(name, values, step, axis, y) for name, values in series.items())
    return (f'<svg id="rates" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" '
            f'height="{RATE_HEIGHT}" viewBox="0 0 {WIDTH} {RATE_HEIGHT}" role="img" '
            f'aria-label="input, shuffle and output rates in MB/s over time">{grid}{paths}'
            f'<text x="12" y="{10 + plot_h / 2:.1f}" transform="rotate(-90 12 '
            f'{10 + plot_h / 2:.1f})" text-anchor="middle">MB/s</text>'
            f"{axis.svg(10 + plot_h)}</svg>")


def _series_path(name: str, values: list[float], step: float, axis: Axis,
                 to_y: Callable[[float], float]) -> str:
    """A step line: each bucket's rate held for the bucket's width; zero where there is none."""
    points = [f"M{axis.x(0):.1f},{to_y(0.0):.1f}"]
    for i, rate in enumerate(values):
        points.append(f"V{to_y(rate / 1e6):.1f}H{axis.x((i + 1) * step):.1f}")
    points.append(f"V{to_y(0.0):.1f}H{axis.x(axis.span):.1f}")
    return (f'<path class="series {name}" fill="none" stroke="{COLORS[name]}" '
            f'stroke-width="1.6" d="{"".join(points)}"><title>{name}</title></path>')


def rates_legend() -> str:
    labels = {"input": "input read", "shuffle": "shuffle fetched", "output": "output written"}
    items = "".join(f'<span class="key"><svg width="18" height="10"><path d="M0,5H18" '
                    f'stroke="{COLORS[n]}" stroke-width="2"/></svg> {labels[n]}</span>'
                    for n in SERIES)
    return f'<div class="legend">{items}</div>'
