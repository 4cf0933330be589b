"""Server-side SVG charts: a few kilobytes each, no script and no network, so the HTML report
stays one small self-contained file (an inlined Vega runtime alone is ~0.9 MB).

One chart kind covers what the report draws: categories on x; bars (stacked or grouped),
lines, horizontal marks, vertical marks and a shaded band over them; a legend; a <title>
tooltip on every bar and point."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape

__all__ = ["Band", "Chart", "HMark", "Series", "VMark", "hbar_chart", "render"]

PALETTE = (
    "#2f6db5", "#e07b39", "#3a9d5d", "#c2413a", "#8467b8", "#8c6d31", "#d16ba5", "#5b8a9a",
    "#b5a33a", "#6b6b6b",
)  # fmt: skip

_W, _H = 1100, 340
_LEFT, _RIGHT, _TOP, _BOTTOM = 78, 24, 56, 74


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float | None]
    color: str = ""
    dash: str = ""


@dataclass(frozen=True)
class HMark:
    value: float
    label: str
    color: str = "#888"


@dataclass(frozen=True)
class VMark:
    at: float  # category index; fractions fall between categories
    label: str
    color: str = "#c2413a"


@dataclass(frozen=True)
class Band:
    name: str
    low: Sequence[float | None]
    high: Sequence[float | None]
    color: str = "#e07b39"


@dataclass
class Chart:
    chart_id: str
    title: str
    x_labels: Sequence[str]
    y_label: str
    bars: list[Series] = field(default_factory=list)
    lines: list[Series] = field(default_factory=list)
    hmarks: list[HMark] = field(default_factory=list)
    vmarks: list[VMark] = field(default_factory=list)
    bands: list[Band] = field(default_factory=list)
    stacked: bool = True
    fmt: Callable[[float], str] = lambda v: f"{v:,.0f}"  # tooltips
    axis: Callable[[float], str] = lambda v: f"{v:,.0f}"  # y-axis ticks


def _colour(i: int, given: str) -> str:
    return given or PALETTE[i % len(PALETTE)]


def _top(chart: Chart) -> float:
    tops: list[float] = [0.0]
    n = len(chart.x_labels)
    for i in range(n):
        vals = [float(s.values[i] or 0) for s in chart.bars]
        tops.append(sum(vals) if chart.stacked else max(vals, default=0.0))
    tops += [float(v) for s in chart.lines for v in s.values if v is not None]
    tops += [float(v) for b in chart.bands for v in b.high if v is not None]
    tops += [m.value for m in chart.hmarks]
    return _nice(max(tops) * 1.05 or 1.0)


def _nice(value: float) -> float:
    magnitude = 10 ** (len(str(int(value))) - 1) if value >= 1 else 1
    for step in (1, 2, 2.5, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return value


class _Frame:
    def __init__(self, chart: Chart):
        self.n = max(len(chart.x_labels), 1)
        self.top = _top(chart)
        self.pw = _W - _LEFT - _RIGHT
        self.ph = _H - _TOP - _BOTTOM
        self.slot = self.pw / self.n

    def x(self, i: float) -> float:
        return _LEFT + self.slot * (i + 0.5)

    def y(self, v: float) -> float:
        return _TOP + self.ph * (1 - v / self.top)


def render(chart: Chart) -> str:
    """The chart as an inline <svg> element."""
    f = _Frame(chart)
    parts = [
        f'<svg id="{escape(chart.chart_id)}" class="chart" viewBox="0 0 {_W} {_H}" '
        f'role="img" aria-label="{escape(chart.title)}" xmlns="http://www.w3.org/2000/svg">',
        f'<text x="{_LEFT}" y="18" class="ct">{escape(chart.title)}</text>',
        *_axes(chart, f),
        *_bands(chart, f),
        *_bars(chart, f),
        *_lines(chart, f),
        *_marks(chart, f),
        *_legend(chart),
        "</svg>",
    ]
    return "".join(parts)


def _axes(chart: Chart, f: _Frame) -> list[str]:
    out = []
    for k in range(5):
        v = f.top * k / 4
        y = f.y(v)
        out.append(
            f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" class="yt">{escape(chart.axis(v))}</text>'
        )
    every = max(1, round(f.n / 16))
    for i, label in enumerate(chart.x_labels):
        if i % every == 0:
            x = f.x(i)
            out.append(
                f'<text x="{x:.1f}" y="{_H - _BOTTOM + 14}" class="xt" '
                f'transform="rotate(35 {x:.1f} {_H - _BOTTOM + 14})">{escape(label)}</text>'
            )
    out.append(
        f'<text x="14" y="{_TOP + f.ph / 2:.0f}" class="yl" '
        f'transform="rotate(-90 14 {_TOP + f.ph / 2:.0f})">{escape(chart.y_label)}</text>'
    )
    return out


def _bars(chart: Chart, f: _Frame) -> list[str]:
    out = []
    k = len(chart.bars) or 1
    width = f.slot * 0.8 / (1 if chart.stacked else k)
    for i in range(len(chart.x_labels)):
        base = 0.0
        for j, s in enumerate(chart.bars):
            v = float(s.values[i] or 0)
            if v <= 0:
                continue
            x0 = f.x(i) - f.slot * 0.4 + (0 if chart.stacked else j * width)
            y0, y1 = f.y(base + v), f.y(base)
            tip = f"{chart.x_labels[i]} · {s.name}: {chart.fmt(v)}"
            out.append(
                f'<rect class="bar" x="{x0:.1f}" y="{y0:.1f}" width="{max(width, 1):.1f}" '
                f'height="{max(y1 - y0, 0.5):.1f}" fill="{_colour(j, s.color)}">'
                f"<title>{escape(tip)}</title></rect>"
            )
            if chart.stacked:
                base += v
    return out


def _polyline(points: list[tuple[float, float]], color: str, dash: str) -> str:
    pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    style = f' stroke-dasharray="{dash}"' if dash else ""
    return f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2.2"{style}/>'


def _lines(chart: Chart, f: _Frame) -> list[str]:
    out = []
    for j, s in enumerate(chart.lines):
        color = _colour(j + len(chart.bars), s.color)
        pts = [(f.x(i), f.y(float(v))) for i, v in enumerate(s.values) if v is not None]
        if len(pts) >= 2:
            out.append(_polyline(pts, color, s.dash))
        for (x, y), (i, v) in zip(
            pts, [(i, v) for i, v in enumerate(s.values) if v is not None], strict=True
        ):
            tip = f"{chart.x_labels[i]} · {s.name}: {chart.fmt(float(v))}"
            out.append(
                f'<circle class="pt" cx="{x:.1f}" cy="{y:.1f}" r="2.6" fill="{color}">'
                f"<title>{escape(tip)}</title></circle>"
            )
    return out


def _bands(chart: Chart, f: _Frame) -> list[str]:
    out = []
    for b in chart.bands:
        idx = [i for i in range(len(b.low)) if b.low[i] is not None and b.high[i] is not None]
        if len(idx) < 2:
            continue
        upper = [(f.x(i), f.y(float(b.high[i] or 0))) for i in idx]
        lower = [(f.x(i), f.y(float(b.low[i] or 0))) for i in reversed(idx)]
        pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in upper + lower)
        out.append(
            f'<polygon class="band" points="{pts}" fill="{b.color}" fill-opacity="0.18">'
            f"<title>{escape(b.name)}</title></polygon>"
        )
    return out


def _marks(chart: Chart, f: _Frame) -> list[str]:
    out = []
    for m in chart.hmarks:
        y = f.y(m.value)
        out.append(
            f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="{m.color}" '
            f'stroke-dasharray="5 4"/><text x="{_LEFT + 4}" y="{y - 4:.1f}" class="ml" '
            f'fill="{m.color}">{escape(m.label)}</text>'
        )
    for v in chart.vmarks:
        x = _LEFT + f.slot * (v.at + 0.5)
        out.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{_TOP}" y2="{_H - _BOTTOM}" stroke="{v.color}" '
            f'stroke-width="2" stroke-dasharray="6 3"/><text x="{x + 5:.1f}" y="{_TOP + 12}" '
            f'class="vl" fill="{v.color}">{escape(v.label)}</text>'
        )
    return out


def _legend(chart: Chart) -> list[str]:
    items = [(s.name, _colour(j, s.color)) for j, s in enumerate(chart.bars)]
    items += [(s.name, _colour(j + len(chart.bars), s.color)) for j, s in enumerate(chart.lines)]
    items += [(b.name, b.color) for b in chart.bands]
    out, x = [], float(_LEFT)
    for name, color in items:
        out.append(
            f'<rect x="{x:.0f}" y="29" width="11" height="11" fill="{color}"/>'
            f'<text x="{x + 15:.0f}" y="39" class="lg">{escape(name)}</text>'
        )
        x += 26 + 6.6 * len(name)
    return out


def hbar_chart(chart_id: str, title: str, rows: Sequence[tuple[str, float, bool]]) -> str:
    """Horizontal bars (label, dollars, highlighted) — the pricing comparison."""
    h = 46 + 44 * len(rows)
    top = max((v for _, v, _ in rows), default=0.0) or 1.0
    parts = [
        f'<svg id="{escape(chart_id)}" class="chart" viewBox="0 0 {_W} {h}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f'<text x="{_LEFT}" y="18" class="ct">{escape(title)}</text>',
    ]
    span = _W - 220 - 160
    for i, (label, value, best) in enumerate(rows):
        y = 34 + 44 * i
        w = max(span * value / top, 1)
        parts.append(
            f'<text x="210" y="{y + 20}" class="hl" text-anchor="end">{escape(label)}</text>'
            f'<rect class="bar" x="220" y="{y}" width="{w:.1f}" height="28" '
            f'fill="{"#3a9d5d" if best else "#2f6db5"}"><title>{escape(label)}: '
            f"${value:,.2f}</title></rect>"
            f'<text x="{226 + w:.1f}" y="{y + 19}" class="hv">${value:,.2f}'
            f"{'  (cheapest)' if best else ''}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)
