"""Charts drawn on the server as inline SVG: no charting library, no script, no CDN.

A chart here is a stacked bar per day, one colour per series, with a y axis up to
a rounded maximum, a date every few bars and a legend. Each SVG has a `<title>`
and a `<desc>` summarising it for screen readers, and the pages show the same
numbers in a table next to it, so nothing is only visible as a picture. Colours
come from CSS classes (`series-0`, `series-1`, ...), so the stylesheet decides them.
Every piece of text goes through `Markup.format`, which escapes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from markupsafe import Markup

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 44, 24, 12, 40

_GRID = Markup(
    '<line class="grid" x1="{x1}" x2="{x2}" y1="{y:.1f}" y2="{y:.1f}"/>'
    '<text class="tick" x="{tx}" y="{ty:.1f}" text-anchor="end">{label}</text>'
)
_BAR = Markup(
    '<rect class="series-{k}" x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}">'
    "<title>{tip}</title></rect>"
)
_DAY = Markup('<text class="tick" x="{x:.1f}" y="{y}" text-anchor="middle">{label}</text>')
_KEY = Markup(
    '<rect class="series-{k}" x="{x}" y="{y}" width="10" height="10"/>'
    '<text class="legend" x="{tx}" y="{ty}">{name}</text>'
)
_SVG = Markup(
    '<svg class="chart" role="img" viewBox="0 0 {w} {h}" xmlns="http://www.w3.org/2000/svg">'
    "<title>{title}</title><desc>{desc}</desc>{body}</svg>"
)


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[int]  # one per day, same length as the chart's days


def nice_max(value: int) -> int:
    """The smallest of 1, 2, 5 x 10^k at or above `value` (at least 1)."""
    step = 1
    while True:
        for m in (1, 2, 5):
            if m * step >= value:
                return m * step
        step *= 10


def _fmt(n: float) -> str:
    return f"{n:.1f}".rstrip("0").rstrip(".")


def daily_bars(title: str, days: Sequence[date], series: Sequence[Series]) -> Markup:
    """A stacked bar chart of `series` over `days`, as inline SVG."""
    for s in series:
        if len(s.values) != len(days):
            raise ValueError(f"series {s.name!r} has {len(s.values)} values for {len(days)} days")
    totals = [sum(s.values[i] for s in series) for i in range(len(days))]
    top = nice_max(max(totals, default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(1, len(days))
    bar = max(1.0, slot * 0.7)
    parts: list[Markup] = []
    for frac in (0.0, 0.5, 1.0):
        y = TOP + plot_h * (1 - frac)
        parts.append(
            _GRID.format(
                x1=LEFT, x2=WIDTH - RIGHT, y=y, tx=LEFT - 6, ty=y + 4, label=_fmt(top * frac)
            )
        )
    every = max(1, len(days) // 6)
    for i, day in enumerate(days):
        x = LEFT + i * slot + (slot - bar) / 2
        base: float = TOP + plot_h
        for k, s in enumerate(series):
            if s.values[i] <= 0:
                continue
            h = plot_h * s.values[i] / top
            base -= h
            tip = f"{day.isoformat()}: {s.name} {s.values[i]}"
            parts.append(_BAR.format(k=k, x=x, y=base, w=bar, h=h, tip=tip))
        if i % every == 0 or i == len(days) - 1:
            parts.append(
                _DAY.format(x=x + bar / 2, y=TOP + plot_h + 16, label=day.strftime("%d %b"))
            )
    lx = LEFT
    for k, s in enumerate(series):
        parts.append(_KEY.format(k=k, x=lx, y=HEIGHT - 14, tx=lx + 14, ty=HEIGHT - 5, name=s.name))
        lx += 24 + 8 * len(s.name)
    span = f"{days[0].isoformat()} to {days[-1].isoformat()}" if days else "no days"
    summary = ", ".join(f"{s.name} {sum(s.values)}" for s in series)
    desc = f"{sum(totals)} in total over {span} ({summary}); busiest day {max(totals, default=0)}."
    return _SVG.format(w=WIDTH, h=HEIGHT, title=title, desc=desc, body=Markup("").join(parts))
