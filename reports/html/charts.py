"""Inline SVG charts for the HTML pages: line charts, horizontal grouped bars, histograms and heatmaps.

Pure functions: numbers and labels in, an SVG string out (``markupsafe.Markup``). Every piece of text placed in
the SVG passes ``markupsafe.escape`` (class and layer names come from the data and are untrusted); attributes
hold only numbers and fixed words. Series are told apart without colour: each has its own marker shape, a dash
style, and a legend entry; every point carries a ``<title>`` with its values.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

from reports.formatting import pct

# Okabe & Ito's colour-blind-safe palette (black first for the reference series)
PALETTE = ("#000000", "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#8C6D31")
MARKERS = ("circle", "square", "triangle", "diamond", "cross", "plus", "down", "bar")
DASHES = {"solid": "", "dashed": "7 4", "dotted": "2 3", "dashdot": "8 3 2 3"}
FONT = 11  # px, tick and legend text
CHAR_W = 0.6 * FONT  # estimated width of one character (sans-serif, a little generous)
GREY = "#666666"
HALO = 'stroke="#ffffff" stroke-width="3" paint-order="stroke"'  # keeps a label readable over lines


def t(text: object) -> str:
    """Escaped text for SVG content and titles."""
    return str(escape(str(text)))


def clip(text: object, limit: int) -> str:
    s = str(text)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def text_width(text: str, size: float = FONT) -> float:
    return len(text) * 0.6 * size


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (steps of 1, 2 or 5 times a power of ten)."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks, k = [], 0
    while first + k * step <= hi + 1e-9 * step:
        ticks.append(round(first + k * step, 12))
        k += 1
    return ticks


def nice_max(value: float) -> float:
    """The smallest round number at or above ``value`` (for an axis that starts at 0)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return next(m * power for m in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10) if m * power >= value - 1e-12)


@dataclass(frozen=True)
class Series:
    label: str
    points: Sequence[tuple[float, float | None]]  # (x, y); y None leaves a gap
    dash: str = "solid"  # solid, dashed, dotted, dashdot
    marker: str | None = None  # None: the series' own shape by position
    colour: str | None = None  # None: the series' own colour by position
    intervals: Sequence[Sequence[float | None] | None] = ()  # per point: [lo, hi] drawn as an error bar, or None


@dataclass(frozen=True)
class Reference:
    value: float
    label: str
    axis: str = "y"  # "y": a horizontal line at y = value; "x": a vertical line at x = value


def marker(shape: str, x: float, y: float, colour: str, hollow: bool, title: str) -> str:
    """One marker with a tooltip; hollow markers tell dashed series apart from solid ones."""
    paint = f'fill="{"#ffffff" if hollow else colour}" stroke="{colour}" stroke-width="1.5"'
    r = 4.0
    if shape == "circle":
        tag, attrs = "circle", f'cx="{x:.1f}" cy="{y:.1f}" r="{r}" {paint}'
    elif shape == "square":
        tag, attrs = "rect", f'x="{x - r:.1f}" y="{y - r:.1f}" width="{2 * r}" height="{2 * r}" {paint}'
    elif shape == "bar":
        tag, attrs = "rect", f'x="{x - r:.1f}" y="{y - 1.5:.1f}" width="{2 * r}" height="3" {paint}'
    elif shape in ("triangle", "down", "diamond"):
        k = 1.25 * r
        pts = {"triangle": [(0, -k), (k, 0.8 * k), (-k, 0.8 * k)], "down": [(0, k), (k, -0.8 * k), (-k, -0.8 * k)],
               "diamond": [(0, -k), (k, 0), (0, k), (-k, 0)]}[shape]
        tag, attrs = "polygon", f'points="{" ".join(f"{x + a:.1f},{y + b:.1f}" for a, b in pts)}" {paint}'
    else:  # cross or plus: strokes only
        d = (f"M{x - r:.1f},{y - r:.1f}L{x + r:.1f},{y + r:.1f}M{x - r:.1f},{y + r:.1f}L{x + r:.1f},{y - r:.1f}"
             if shape == "cross" else f"M{x - r:.1f},{y:.1f}H{x + r:.1f}M{x:.1f},{y - r:.1f}V{y + r:.1f}")
        tag, attrs = "path", f'd="{d}" stroke="{colour}" stroke-width="2" fill="none"'
    return f"<{tag} {attrs}><title>{t(title)}</title></{tag}>"


def error_bar(x: float, y_lo: float, y_hi: float, colour: str, title: str) -> str:
    """A vertical error bar with caps from screen y ``y_lo`` to ``y_hi`` (an interval of the point at x)."""
    cap = 3.0
    return (f'<path class="error-bar" d="M{x:.1f},{y_lo:.1f}V{y_hi:.1f}M{x - cap:.1f},{y_lo:.1f}H{x + cap:.1f}'
            f'M{x - cap:.1f},{y_hi:.1f}H{x + cap:.1f}" stroke="{colour}" stroke-width="1.2" fill="none">'
            f'<title>{t(title)}</title></path>')


def _legend(entries: list[tuple[str, str, str, str]], width: float, y0: float) -> tuple[list[str], float]:
    """Legend rows below a chart: (label, colour, shape, dash) per entry. Returns the SVG parts and its height."""
    parts, x, y, row_h = [], 8.0, y0 + 14, 18
    for label, colour, shape, dash in entries:
        shown = clip(label, 60)
        w = 40 + text_width(shown) + 16
        if x + w > width and x > 8:
            x, y = 8.0, y + row_h
        dash_attr = f' stroke-dasharray="{DASHES[dash]}"' if DASHES.get(dash) else ""
        parts.append(f'<line x1="{x:.1f}" y1="{y - 4:.1f}" x2="{x + 30:.1f}" y2="{y - 4:.1f}" stroke="{colour}" '
                     f'stroke-width="2"{dash_attr}/>')
        if shape in ("hollow", "solid"):  # a bar swatch instead of a line sample
            parts[-1] = (f'<rect x="{x + 4:.1f}" y="{y - 9:.1f}" width="22" height="10" stroke="{colour}" '
                         f'fill="{"#ffffff" if shape == "hollow" else colour}"/>')
        elif shape:
            parts.append(marker(shape, x + 15, y - 4, colour, dash != "solid", label))
        parts.append(f'<text x="{x + 36:.1f}" y="{y:.1f}">{t(shown)}<title>{t(label)}</title></text>')
        x += w
    return parts, y - y0 + 8


def _open(width: float, height: float, title: str) -> str:
    return (f'<svg class="chart" viewBox="0 0 {width:.0f} {height:.0f}" '
            f'width="{width:.0f}" height="{height:.0f}" role="img" aria-label="{t(title)}" '
            f'font-family="system-ui, sans-serif" font-size="{FONT}"><title>{t(title)}</title>')


def _category_label(x: float, base: float, label: str, rotate: bool) -> str:
    """A category's label (escaped markup) under the axis at ``x``: turned 45 degrees when labels are long."""
    if rotate:
        return (f'<text x="{x:.1f}" y="{base + 12:.1f}" text-anchor="end" '
                f'transform="rotate(-45 {x:.1f} {base + 12:.1f})">{label}</text>')
    return f'<text x="{x:.1f}" y="{base + 16:.1f}" text-anchor="middle">{label}</text>'


def line_chart(series: Sequence[Series], *, title: str, x_label: str, y_label: str,
               y_range: tuple[float, float] = (0.0, 1.0), y_format: Callable[[float], str] = pct,
               x_ticks: Sequence[tuple[float, str]] | None = None, categories: Sequence[str] | None = None,
               references: Sequence[Reference] = (), width: float = 900, height: float = 260) -> Markup:
    """A line chart with axes, ticks, reference lines and a legend.

    ``categories``: the x axis is categorical (layer names); points' x values are category indices.
    A series' ``intervals`` draw each point's [lo, hi] as a vertical bar with caps (its ends in the tooltip).
    ``x_ticks``: (value, label) pairs for a numeric x axis (labels that would overlap are dropped); by default
    round ticks. ``height`` is the plot area's; the SVG grows for tick labels and the legend.
    """
    xs = [x for s in series for x, _ in s.points] + [r.value for r in references if r.axis == "x"]
    y_lo, y_hi = y_range
    y_ticks = nice_ticks(y_lo, y_hi, 5)
    left = 14 + FONT + max(text_width(y_format(v)) for v in y_ticks) + 8
    right = 16.0
    tick_rot = False
    if categories is not None:
        n = max(len(categories), 1)
        x_lo, x_hi = -0.5, n - 0.5
        shown = [clip(c, 18) for c in categories]
        slot = (width - left - right) / n
        tick_rot = max((text_width(s) for s in shown), default=0) > slot - 4
        bottom = 12 + (max(text_width(s) for s in shown) * 0.71 + 8 if tick_rot and shown else FONT + 6) + FONT + 10
    else:
        x_lo, x_hi = min(xs + [0.0]), max(xs + [1e-12])
        x_hi = x_hi if x_hi > x_lo else x_lo + 1.0
        bottom = 12 + FONT + 6 + FONT + 10
    plot_w, plot_h = width - left - right, height
    top = 16.0

    def sx(x: float) -> float:
        return left + (x - x_lo) / (x_hi - x_lo) * plot_w

    def sy(y: float) -> float:
        y = min(max(y, y_lo), y_hi)
        return top + plot_h - (y - y_lo) / (y_hi - y_lo) * plot_h

    styles = [(s.colour or PALETTE[i % len(PALETTE)], s.marker or MARKERS[i % len(MARKERS)])
              for i, s in enumerate(series)]
    legend, legend_h = _legend([(s.label, c, m, s.dash) for s, (c, m) in zip(series, styles, strict=True)],
                               width, top + plot_h + bottom)
    total_h = top + plot_h + bottom + legend_h
    parts = [_open(width, total_h, title)]
    # grid and y axis
    for v in y_ticks:
        y = sy(v)
        parts.append(f'<line x1="{left:.1f}" y1="{y:.1f}" x2="{left + plot_w:.1f}" y2="{y:.1f}" stroke="#dddddd"/>')
        parts.append(f'<text x="{left - 6:.1f}" y="{y + 4:.1f}" text-anchor="end">{t(y_format(v))}</text>')
    parts.append(f'<rect x="{left:.1f}" y="{top:.1f}" width="{plot_w:.1f}" height="{plot_h:.1f}" fill="none" '
                 f'stroke="{GREY}"/>')
    mid_y = top + plot_h / 2
    parts.append(f'<text x="{12:.1f}" y="{mid_y:.1f}" text-anchor="middle" transform="rotate(-90 12 {mid_y:.1f})">'
                 f"{t(y_label)}</text>")
    # x ticks
    base = top + plot_h
    if categories is not None:
        for i, name in enumerate(categories):
            x = sx(i)
            parts.append(f'<line x1="{x:.1f}" y1="{base:.1f}" x2="{x:.1f}" y2="{base + 4:.1f}" stroke="{GREY}"/>')
            label = f"{t(clip(name, 18))}<title>{t(name)}</title>"
            parts.append(_category_label(x, base, label, tick_rot))
    else:
        ticks = list(x_ticks) if x_ticks else [(v, f"{v:g}") for v in nice_ticks(x_lo, x_hi, 6)]
        last_end = -math.inf
        for v, label in sorted(ticks):
            x, w = sx(v), text_width(label)
            if x - w / 2 < last_end + 6:
                continue  # would overlap the previous label
            last_end = x + w / 2
            parts.append(f'<line x1="{x:.1f}" y1="{base:.1f}" x2="{x:.1f}" y2="{base + 4:.1f}" stroke="{GREY}"/>')
            parts.append(f'<text x="{x:.1f}" y="{base + 16:.1f}" text-anchor="middle">{t(label)}</text>')
    parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h + bottom - 8:.1f}" text-anchor="middle">'
                 f"{t(x_label)}</text>")
    # reference lines
    placed: list[float] = []  # baselines of the horizontal references' labels at the right
    for ref in sorted(references, key=lambda r: -r.value if r.axis == "y" else 0):
        if ref.axis == "y":
            y = sy(ref.value)
            parts.append(f'<line x1="{left:.1f}" y1="{y:.1f}" x2="{left + plot_w:.1f}" y2="{y:.1f}" stroke="{GREY}" '
                         f'stroke-width="1.2" stroke-dasharray="{DASHES["dotted"]}"/>')
            label_y = y - 4
            if any(abs(label_y - p) < FONT + 2 for p in placed):
                label_y = max(placed) + FONT + 2  # below the label above it, so close lines keep both readable
            placed.append(label_y)
            parts.append(f'<text x="{left + plot_w - 4:.1f}" y="{label_y:.1f}" text-anchor="end" fill="#444444" '
                         f"{HALO}>{t(ref.label)}</text>")
        else:
            x = sx(ref.value)
            anchor, dx = ("end", -4) if x > left + plot_w * 0.7 else ("start", 4)
            parts.append(f'<line x1="{x:.1f}" y1="{top:.1f}" x2="{x:.1f}" y2="{base:.1f}" stroke="{GREY}" '
                         f'stroke-width="1.2" stroke-dasharray="{DASHES["dashdot"]}"/>')
            parts.append(f'<text x="{x + dx:.1f}" y="{top + 12:.1f}" text-anchor="{anchor}" fill="#444444" {HALO}>'
                         f"{t(ref.label)}</text>")
    # series
    for s, (colour, shape) in zip(series, styles, strict=True):
        dash_attr = f' stroke-dasharray="{DASHES[s.dash]}"' if DASHES.get(s.dash) else ""
        run: list[str] = []
        segments = []
        for x, y in s.points:
            if y is None:
                segments.append(run)
                run = []
            else:
                run.append(f"{sx(x):.1f},{sy(y):.1f}")
        segments.append(run)
        for seg in segments:
            if len(seg) > 1:
                parts.append(f'<polyline points="{" ".join(seg)}" fill="none" stroke="{colour}" stroke-width="2"'
                             f"{dash_attr}/>")
        for k, (x, y) in enumerate(s.points):
            if y is not None:
                where = categories[int(x)] if categories is not None else f"{x:g}"
                bounds = s.intervals[k] if k < len(s.intervals) else None
                shown = f"{s.label}: {where} → {y_format(y)}"
                if bounds and bounds[0] is not None and bounds[1] is not None:
                    parts.append(error_bar(sx(x), sy(bounds[0]), sy(bounds[1]), colour,
                                           f"{s.label}: [{y_format(bounds[0])}, {y_format(bounds[1])}]"))
                    shown += f" [{y_format(bounds[0])}, {y_format(bounds[1])}]"
                parts.append(marker(shape, sx(x), sy(y), colour, s.dash != "solid", shown))
    parts.extend(legend)
    parts.append("</svg>")
    return Markup("".join(parts))


def hbar_chart(categories: Sequence[str], groups: Sequence[tuple[str, Sequence[float | None]]], *, title: str,
               x_label: str, x_max: float = 1.0, value_format: Callable[[float], str] = pct,
               width: float = 900, intervals: Sequence[Sequence[Sequence[float] | None]] | None = None) -> Markup:
    """Horizontal grouped bars, one row per category; the first group hollow, the others solid (no colour needed).

    Values are written at the end of each bar; a missing value is drawn as "—". ``intervals`` (per group, per
    category: [lo, hi] or None) draw a whisker with caps across the bar, its ends in the bar's tooltip.
    """
    bar_h, gap = 9.0, 8.0
    names = [clip(c, 28) for c in categories]
    left = 10 + max((text_width(n) for n in names), default=40)
    right = 52.0
    plot_w = width - left - right
    row_h = len(groups) * bar_h + gap
    top = 8.0
    plot_h = row_h * len(categories)
    legend, legend_h = _legend([(label, PALETTE[i % len(PALETTE)], "hollow" if i == 0 else "solid", "solid")
                                for i, (label, _) in enumerate(groups)], width, top + plot_h + 34)
    total_h = top + plot_h + 34 + legend_h
    parts = [_open(width, total_h, title)]

    def sx(v: float) -> float:
        return left + min(max(v, 0.0), x_max) / x_max * plot_w

    for v in nice_ticks(0.0, x_max, 5):
        x = sx(v)
        parts.append(f'<line x1="{x:.1f}" y1="{top:.1f}" x2="{x:.1f}" y2="{top + plot_h:.1f}" stroke="#dddddd"/>')
        parts.append(f'<text x="{x:.1f}" y="{top + plot_h + 14:.1f}" text-anchor="middle">{t(value_format(v))}</text>')
    parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h + 30:.1f}" text-anchor="middle">'
                 f"{t(x_label)}</text>")
    for r, (name, short) in enumerate(zip(categories, names, strict=True)):
        y0 = top + r * row_h + gap / 2
        parts.append(f'<text x="{left - 6:.1f}" y="{y0 + len(groups) * bar_h / 2 + 4:.1f}" text-anchor="end">'
                     f"{t(short)}<title>{t(name)}</title></text>")
        for g, (label, values) in enumerate(groups):
            colour = PALETTE[g % len(PALETTE)]
            v = values[r]
            y = y0 + g * bar_h
            fill = "#ffffff" if g == 0 else colour
            bounds = intervals[g][r] if intervals and g < len(intervals) and r < len(intervals[g]) else None
            bounds = bounds if v is not None and bounds and None not in bounds[:2] else None
            if v is not None:
                shown = f"{value_format(v)}" + (f" [{value_format(bounds[0])}, {value_format(bounds[1])}]"
                                                if bounds else "")
                parts.append(f'<rect x="{left:.1f}" y="{y:.1f}" width="{max(sx(v) - left, 0.5):.1f}" '
                             f'height="{bar_h - 1:.1f}" fill="{fill}" stroke="{colour}">'
                             f"<title>{t(name)}, {t(label)}: {t(shown)}</title></rect>")
            end = sx(v) if v is not None else left
            if bounds:
                mid, a, b = y + (bar_h - 1) / 2, sx(bounds[0]), sx(bounds[1])
                whisker = "#000000" if g == 0 else GREY
                parts.append(f'<path class="error-bar" d="M{a:.1f},{mid:.1f}H{b:.1f}M{a:.1f},{mid - 3:.1f}V{mid + 3:.1f}'
                             f'M{b:.1f},{mid - 3:.1f}V{mid + 3:.1f}" stroke="{whisker}" stroke-width="1" fill="none">'
                             f"<title>{t(name)}, {t(label)}: [{t(value_format(bounds[0]))}, "
                             f"{t(value_format(bounds[1]))}]</title></path>")
                end = max(end, b)
            parts.append(f'<text x="{end + 4:.1f}" y="{y + bar_h - 1.5:.1f}" font-size="{FONT - 1}">'
                         f"{t(value_format(v) if v is not None else '—')}</text>")
    parts.append(f'<line x1="{left:.1f}" y1="{top:.1f}" x2="{left:.1f}" y2="{top + plot_h:.1f}" stroke="{GREY}"/>')
    parts.extend(legend)
    parts.append("</svg>")
    return Markup("".join(parts))


def histogram(edges: Sequence[float], counts: Sequence[int], *, title: str, x_label: str,
              y_label: str = "count", width: float = 900, height: float = 180) -> Markup:
    """Bars over bins [edges[i], edges[i+1]) with their counts written above them."""
    if not counts or len(edges) not in (len(counts), len(counts) + 1):
        return Markup(f"<p>{t(title)}: no data</p>")
    labels = [f"{e:g}" for e in edges]
    if len(edges) == len(counts):  # the last bin is open: [edges[-1], inf), drawn as wide as the one before
        step = edges[-1] - edges[-2] if len(edges) > 1 else 1.0
        edges, labels = [*edges, edges[-1] + step], [*labels, "∞"]
    y_max = nice_max(max(*counts, 1))
    y_ticks = nice_ticks(0, y_max, 4)
    left = 14 + FONT + max(text_width(f"{v:g}") for v in y_ticks) + 8
    top, right, bottom = 16.0, 16.0, 12 + FONT + 6 + FONT + 10
    plot_w, plot_h = width - left - right, height
    lo, hi = edges[0], edges[-1]
    parts = [_open(width, top + plot_h + bottom, title)]

    def sx(x: float) -> float:
        return left + (x - lo) / ((hi - lo) or 1.0) * plot_w

    def sy(y: float) -> float:
        return top + plot_h - y / y_max * plot_h

    for v in y_ticks:
        parts.append(f'<line x1="{left:.1f}" y1="{sy(v):.1f}" x2="{left + plot_w:.1f}" y2="{sy(v):.1f}" '
                     f'stroke="#dddddd"/><text x="{left - 6:.1f}" y="{sy(v) + 4:.1f}" text-anchor="end">{v:g}</text>')
    for i, c in enumerate(counts):
        x0, x1 = sx(edges[i]), sx(edges[i + 1])
        parts.append(f'<rect x="{x0 + 1:.1f}" y="{sy(c):.1f}" width="{max(x1 - x0 - 2, 1):.1f}" '
                     f'height="{top + plot_h - sy(c):.1f}" fill="{PALETTE[1]}" stroke="#000000" stroke-width="0.8">'
                     f"<title>{t(f'{labels[i]} to {labels[i + 1]}: {c}')}</title></rect>")
        if c:
            parts.append(f'<text x="{(x0 + x1) / 2:.1f}" y="{sy(c) - 4:.1f}" text-anchor="middle">{int(c)}</text>')
    last_end = -math.inf
    for e, label in zip(edges, labels, strict=True):
        x = sx(e)
        if x - text_width(label) / 2 < last_end + 4:
            continue
        last_end = x + text_width(label) / 2
        parts.append(f'<text x="{x:.1f}" y="{top + plot_h + 16:.1f}" text-anchor="middle">{t(label)}</text>')
    parts.append(f'<line x1="{left:.1f}" y1="{top + plot_h:.1f}" x2="{left + plot_w:.1f}" y2="{top + plot_h:.1f}" '
                 f'stroke="{GREY}"/>')
    mid_y = top + plot_h / 2
    parts.append(f'<text x="12" y="{mid_y:.1f}" text-anchor="middle" transform="rotate(-90 12 {mid_y:.1f})">'
                 f"{t(y_label)}</text>")
    parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h + bottom - 8:.1f}" text-anchor="middle">'
                 f"{t(x_label)}</text></svg>")
    return Markup("".join(parts))


def nice_range(lo: float, hi: float, count: int = 5) -> tuple[float, float]:
    """[lo, hi] widened to round tick values on both ends (for an axis that need not start at 0)."""
    if hi <= lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    ticks = nice_ticks(lo, hi, count)
    step = ticks[1] - ticks[0] if len(ticks) > 1 else (hi - lo)
    return round(math.floor(lo / step + 1e-9) * step, 12), round(math.ceil(hi / step - 1e-9) * step, 12)


@dataclass(frozen=True)
class Cell:
    value: float | None  # None: not measured ("—" on grey)
    marked: bool = False  # drawn with a heavy border and "*" after its value (e.g. significant)
    note: str = ""  # added to the cell's tooltip


def shade(value: float, lo: float, hi: float) -> tuple[str, bool]:
    """A colour from white (at or below ``lo``) to the palette's blue (at or above ``hi``), and whether text on it
    should be white."""
    k = min(max((value - lo) / ((hi - lo) or 1.0), 0.0), 1.0)
    blue = (0x00, 0x72, 0xB2)
    rgb = [round(255 + (c - 255) * k) for c in blue]
    return "#" + "".join(f"{c:02x}" for c in rgb), k > 0.55


def heatmap(rows: Sequence[str], columns: Sequence[str], cells: Sequence[Sequence[Cell]], *, title: str,
            x_label: str, y_label: str, lo: float, hi: float, value_format: Callable[[float], str] = pct,
            scale_label: str = "", mark_label: str = "", width: float = 900) -> Markup:
    """A grid of ``cells[row][column]``: each cell's value is written in it and sets its shade (``shade``, from
    ``lo`` to ``hi``; a step scale below the grid); marked cells have a heavy black border and a "*" after the
    value, so a reader needs no colour to tell them. Every cell carries a ``<title>`` with its row, column, value
    and note."""
    cell_h = 24.0
    names = [clip(r, 28) for r in rows]
    left = 14 + FONT + max((text_width(n) for n in names), default=40) + 8
    right = 16.0
    n = max(len(columns), 1)
    cell_w = min((width - left - right) / n, 110.0)
    shown = [clip(c, 18) for c in columns]
    rotate = max((text_width(s) for s in shown), default=0) > cell_w - 4
    top = 8.0
    plot_h = cell_h * len(rows)
    base = top + plot_h
    label_h = max(text_width(s) for s in shown) * 0.71 + 8 if rotate and shown else FONT + 6
    scale_y = base + 12 + label_h + FONT + 14
    total_h = scale_y + 16 + FONT + 8
    parts = [_open(width, total_h, title)]
    for r, (name, short) in enumerate(zip(rows, names, strict=True)):
        y = top + r * cell_h
        parts.append(f'<text x="{left - 6:.1f}" y="{y + cell_h / 2 + 4:.1f}" text-anchor="end">{t(short)}'
                     f"<title>{t(name)}</title></text>")
        for c, column in enumerate(columns):
            cell = cells[r][c]
            x = left + c * cell_w
            if cell.value is None:
                fill, light, text = "#eeeeee", False, "—"
            else:
                fill, light = shade(cell.value, lo, hi)
                text = value_format(cell.value) + ("*" if cell.marked else "")
            about = f"{name}, {column}: {text}" + (f"; {cell.note}" if cell.note else "")
            parts.append(f'<rect x="{x + 1:.1f}" y="{y + 1:.1f}" width="{cell_w - 2:.1f}" height="{cell_h - 2:.1f}" '
                         f'fill="{fill}" stroke="{"#000000" if cell.marked else "#d0d0d0"}" '
                         f'stroke-width="{2.5 if cell.marked else 1}"><title>{t(about)}</title></rect>')
            weight = ' font-weight="700"' if cell.marked else ""
            parts.append(f'<text x="{x + cell_w / 2:.1f}" y="{y + cell_h / 2 + 4:.1f}" text-anchor="middle" '
                         f'fill="{"#ffffff" if light else "#000000"}"{weight}>{t(text)}<title>{t(about)}</title>'
                         "</text>")
    for c, column in enumerate(columns):
        x = left + (c + 0.5) * cell_w
        label = f"{t(shown[c])}<title>{t(column)}</title>"
        parts.append(_category_label(x, base, label, rotate))
    grid_w = cell_w * len(columns)
    parts.append(f'<text x="{left + grid_w / 2:.1f}" y="{base + 12 + label_h + FONT:.1f}" text-anchor="middle">'
                 f"{t(x_label)}</text>")
    mid_y = top + plot_h / 2
    parts.append(f'<text x="12" y="{mid_y:.1f}" text-anchor="middle" transform="rotate(-90 12 {mid_y:.1f})">'
                 f"{t(y_label)}</text>")
    # the scale: six steps from lo to hi, then what a marked cell means
    x = left
    if scale_label:
        parts.append(f'<text x="{x:.1f}" y="{scale_y + 12:.1f}">{t(scale_label)}</text>')
        x += text_width(scale_label) + 8
    for k in range(6):
        v = lo + (hi - lo) * k / 5
        fill, light = shade(v, lo, hi)
        label = value_format(v)
        w = max(text_width(label) + 10, 40)
        parts.append(f'<rect x="{x:.1f}" y="{scale_y:.1f}" width="{w:.1f}" height="16" fill="{fill}" '
                     f'stroke="{GREY}" stroke-width="0.5"/><text x="{x + w / 2:.1f}" y="{scale_y + 12:.1f}" '
                     f'text-anchor="middle" fill="{"#ffffff" if light else "#000000"}">{t(label)}</text>')
        x += w
    if mark_label:
        parts.append(f'<rect x="{x + 16:.1f}" y="{scale_y:.1f}" width="28" height="16" fill="#ffffff" '
                     f'stroke="#000000" stroke-width="2.5"/><text x="{x + 50:.1f}" y="{scale_y + 12:.1f}">'
                     f"{t(mark_label)}</text>")
    parts.append("</svg>")
    return Markup("".join(parts))
