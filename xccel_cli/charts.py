"""Small server-side SVG charts for the dashboard: bars, horizontal bar panels, lines, a funnel.

Every chart is one inline <svg role="img"> with a <title> and <desc> (its accessible name and summary),
axis labels with units, and no external reference of any kind. All text passes through escape().
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

Formatter = Callable[[float], str]

BLUE = "#2c6fbb"
ORANGE = "#d9730d"
GREY = "#8a94a6"
LIGHT = "#dbe5f3"
INK = "#1f2933"
MUTED = "#5b6675"
GRID = "#e3e7ee"
FONT = 12


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float | None]
    color: str = BLUE


@dataclass(frozen=True)
class Panel:
    """One column of a horizontal bar chart: its own x axis, sharing the row labels."""

    title: str
    series: Sequence[Series]
    x_label: str
    fmt: Formatter


def number(value: float) -> str:
    """1,234 for whole numbers, else up to two decimals without trailing zeros (0.5, 12.25)."""
    if value == int(value):
        return f"{int(value):,}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def percent(value: float) -> str:
    return f"{value * 100:.1f}%"


def nice_ticks(top: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least top (1-2-2.5-5 steps)."""
    if top <= 0 or not math.isfinite(top):
        return [0.0, 1.0]
    raw = max(top, 1e-9) / count  # below that nothing is drawn anyway (and log10 of a denormal fails)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    ticks = [0.0]
    while ticks[-1] < top:
        ticks.append(float(f"{len(ticks) * step:.12g}"))  # i * step, without float noise (0.30000000000000004)
    return ticks


def _text(
    x: float,
    y: float,
    content: str,
    *,
    anchor: str = "start",
    size: int = FONT,
    color: str = MUTED,
    weight: str = "normal",
    extra: str = "",
) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" fill="{color}"'
        f' font-weight="{weight}"{extra}>{escape(content)}</text>'
    )


def _open(chart_id: str, title: str, description: str, width: int, height: int) -> str:
    return (
        f'<svg id="{escape(chart_id)}" class="chart" role="img" aria-labelledby="{escape(chart_id)}-title '
        f'{escape(chart_id)}-desc" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'preserveAspectRatio="xMinYMin meet">'
        f'<title id="{escape(chart_id)}-title">{escape(title)}</title>'
        f'<desc id="{escape(chart_id)}-desc">{escape(description)}</desc>'
    )


def _legend(series: Sequence[Series], x: float, y: float) -> str:
    parts = []
    for item in series:
        parts.append(f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="10" height="10" fill="{item.color}"/>')
        parts.append(_text(x + 14, y, item.name, color=INK))
        x += 24 + 7 * len(item.name)
    return "".join(parts)


def truncate(label: str, limit: int) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def empty_chart(chart_id: str, title: str, message: str, width: int = 520, height: int = 120) -> str:
    """The frame of a chart with nothing to draw, saying why."""
    return (
        _open(chart_id, title, message, width, height)
        + f'<rect x="0.5" y="0.5" width="{width - 1}" height="{height - 1}" fill="#f7f9fc" stroke="{GRID}"/>'
        + _text(width / 2, height / 2 + 4, message, anchor="middle", size=13)
        + "</svg>"
    )


def bar_chart(
    *,
    chart_id: str,
    title: str,
    description: str,
    categories: Sequence[str],
    series: Sequence[Series],
    x_label: str,
    y_label: str,
    fmt: Formatter = number,
    marker: tuple[float, str] | None = None,
    width: int = 520,
    height: int = 300,
) -> str:
    """Vertical bars per category (grouped when several series); marker = (category position, label)
    draws a dashed line, e.g. at the median (position 2.5 = halfway between categories 2 and 3)."""
    left, right, top, bottom = 62, 12, 34, 58
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for s in series for v in s.values if v is not None]
    ticks = nice_ticks(max(values, default=0))
    scale = plot_h / ticks[-1]
    slot = plot_w / max(len(categories), 1)
    bar_w = max(1.0, slot * 0.8 / max(len(series), 1))
    out = [_open(chart_id, title, description, width, height)]
    for tick in ticks:
        y = top + plot_h - tick * scale
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        out.append(_text(left - 6, y + 4, fmt(tick), anchor="end", size=11))
    every = max(1, math.ceil(len(categories) / 16))  # thin the axis labels when there are many bars
    for i, category in enumerate(categories):
        x0 = left + i * slot + slot * 0.1
        for j, item in enumerate(series):
            value = item.values[i]
            if value is None:
                continue
            h = value * scale
            out.append(
                f'<rect x="{x0 + j * bar_w:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w:.1f}" '
                f'height="{h:.1f}" fill="{item.color}"><title>{escape(item.name)}, {escape(category)}: '
                f"{escape(fmt(value))}</title></rect>"
            )
        if i % every == 0:
            out.append(_text(left + (i + 0.5) * slot, top + plot_h + 15, category, anchor="middle", size=11))
    out.append(f'<line x1="{left}" x2="{width - right}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="{MUTED}"/>')
    if marker is not None:
        position, label = marker
        x = left + (position + 0.5) * slot
        out.append(
            f'<line class="marker" x1="{x:.1f}" x2="{x:.1f}" y1="{top - 4}" y2="{top + plot_h}" '
            f'stroke="{INK}" stroke-width="1.5" stroke-dasharray="5 3"/>'
        )
        out.append(_text(x + 4, top + 8, label, color=INK, weight="bold"))
    out.append(_text(left + plot_w / 2, height - 22, x_label, anchor="middle", color=INK))
    out.append(
        _text(
            14,
            top + plot_h / 2,
            y_label,
            anchor="middle",
            color=INK,
            extra=f' transform="rotate(-90 14 {top + plot_h / 2:.1f})"',
        )
    )
    if len(series) > 1:
        out.append(_legend(series, left, height - 4))
    out.append("</svg>")
    return "".join(out)


def hbar_panels(
    *,
    chart_id: str,
    title: str,
    description: str,
    labels: Sequence[str],
    panels: Sequence[Panel],
    width: int = 1040,
    label_width: int = 190,
    row_height: int = 30,
) -> str:
    """Horizontal bars, one row per label, in side-by-side panels that each have their own x axis."""
    top, bottom, gap = 40, 58, 26
    height = top + bottom + row_height * len(labels)
    panel_w = (width - label_width - gap * len(panels)) / max(len(panels), 1)
    out = [_open(chart_id, title, description, width, height)]
    for row, label in enumerate(labels):
        y = top + row * row_height + row_height / 2 + 4
        out.append(
            _text(
                label_width - 8,
                y,
                truncate(label, 26),
                anchor="end",
                color=INK,
                extra="" if len(label) <= 26 else f' data-full="{escape(label)}"',
            )
        )
    plot_h = row_height * len(labels)
    for p, panel in enumerate(panels):
        x0 = label_width + p * (panel_w + gap) + 6
        plot_w = panel_w - 44  # room for the value written after the longest bar
        values = [v for s in panel.series for v in s.values if v is not None]
        ticks = nice_ticks(max(values, default=0), 4)
        scale = plot_w / ticks[-1]
        out.append(_text(x0, top - 22, panel.title, color=INK, weight="bold"))
        for tick in ticks:
            x = x0 + tick * scale
            out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + plot_h}" stroke="{GRID}"/>')
            out.append(_text(x, top + plot_h + 15, panel.fmt(tick), anchor="middle", size=11))
        bar_h = row_height * 0.7 / max(len(panel.series), 1)
        for row, label in enumerate(labels):
            for j, item in enumerate(panel.series):
                value = item.values[row]
                if value is None:
                    continue
                y = top + row * row_height + row_height * 0.15 + j * bar_h
                w = value * scale
                out.append(
                    f'<rect x="{x0:.1f}" y="{y:.1f}" width="{w:.1f}" height="{bar_h:.1f}" '
                    f'fill="{item.color}"><title>{escape(label)}, {escape(item.name)}: '
                    f"{escape(panel.fmt(value))}</title></rect>"
                )
                out.append(_text(x0 + w + 4, y + bar_h / 2 + 4, panel.fmt(value), size=10, color=INK))
        out.append(f'<line x1="{x0:.1f}" x2="{x0:.1f}" y1="{top}" y2="{top + plot_h}" stroke="{MUTED}"/>')
        out.append(_text(x0 + plot_w / 2, top + plot_h + 34, panel.x_label, anchor="middle", color=INK))
        if len(panel.series) > 1:
            out.append(_legend(panel.series, x0, top - 6))
    out.append("</svg>")
    return "".join(out)


def line_chart(
    *,
    chart_id: str,
    title: str,
    description: str,
    categories: Sequence[str],
    series: Sequence[Series],
    x_label: str,
    y_label: str,
    fmt: Formatter = number,
    width: int = 520,
    height: int = 300,
) -> str:
    """Lines over ordered categories (days), with a dot per value when there are few."""
    left, right, top, bottom = 62, 16, 34, 58
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for s in series for v in s.values if v is not None]
    ticks = nice_ticks(max(values, default=0))
    scale = plot_h / ticks[-1]
    step = plot_w / max(len(categories) - 1, 1)

    def point(i: int, value: float) -> tuple[float, float]:
        x = left + (i * step if len(categories) > 1 else plot_w / 2)
        return x, top + plot_h - value * scale

    out = [_open(chart_id, title, description, width, height)]
    for tick in ticks:
        y = top + plot_h - tick * scale
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        out.append(_text(left - 6, y + 4, fmt(tick), anchor="end", size=11))
    every = max(1, math.ceil(len(categories) / 8))
    for i, category in enumerate(categories):
        if i % every == 0 or i == len(categories) - 1 and len(categories) <= 8:
            x, _ = point(i, 0)
            out.append(_text(x, top + plot_h + 15, category, anchor="middle", size=11))
    for item in series:
        runs: list[list[tuple[float, float]]] = [[]]
        for i, value in enumerate(item.values):
            if value is None:
                runs.append([])  # a gap in the data is a gap in the line
            else:
                runs[-1].append(point(i, value))
        for run in runs:
            if len(run) > 1:
                path = " ".join(f"{x:.1f},{y:.1f}" for x, y in run)
                out.append(f'<polyline points="{path}" fill="none" stroke="{item.color}" stroke-width="2"/>')
        if len(categories) <= 40:
            for i, value in enumerate(item.values):
                if value is not None:
                    x, y = point(i, value)
                    out.append(
                        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{item.color}"><title>'
                        f"{escape(item.name)}, {escape(categories[i])}: {escape(fmt(value))}</title></circle>"
                    )
    out.append(f'<line x1="{left}" x2="{width - right}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="{MUTED}"/>')
    out.append(_text(left + plot_w / 2, height - 22, x_label, anchor="middle", color=INK))
    out.append(
        _text(
            14,
            top + plot_h / 2,
            y_label,
            anchor="middle",
            color=INK,
            extra=f' transform="rotate(-90 14 {top + plot_h / 2:.1f})"',
        )
    )
    out.append(_legend(series, left, height - 4))
    out.append("</svg>")
    return "".join(out)


def funnel_chart(
    *,
    chart_id: str,
    title: str,
    description: str,
    steps: Sequence[str],
    reached: Sequence[int],
    with_event: Sequence[int],
    width: int = 520,
    height: int = 300,
) -> str:
    """One bar per step: dark = sessions that reached it through every earlier step, light behind it =
    sessions holding the step's event at all. Percentages are of the first step."""
    left, right, top, bottom = 100, 170, 34, 58
    plot_w = width - left - right
    row_h = (height - top - bottom) / max(len(steps), 1)
    base = max(reached[0] if reached else 0, 1)
    ticks = nice_ticks(max([*with_event, *reached, 0]), 4)
    scale = plot_w / ticks[-1]
    out = [_open(chart_id, title, description, width, height)]
    for tick in ticks:
        x = left + tick * scale
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{height - bottom}" stroke="{GRID}"/>')
        out.append(_text(x, height - bottom + 15, number(tick), anchor="middle", size=11))
    for i, step in enumerate(steps):
        y = top + i * row_h + row_h * 0.15
        bar_h = row_h * 0.7
        out.append(_text(left - 8, y + bar_h / 2 + 4, step, anchor="end", color=INK))
        out.append(
            f'<rect x="{left}" y="{y:.1f}" width="{with_event[i] * scale:.1f}" height="{bar_h:.1f}" '
            f'fill="{LIGHT}"><title>{escape(step)}: {with_event[i]:,} sessions hold this event</title></rect>'
        )
        out.append(
            f'<rect x="{left}" y="{y:.1f}" width="{reached[i] * scale:.1f}" height="{bar_h:.1f}" '
            f'fill="{BLUE}"><title>{escape(step)}: {reached[i]:,} sessions reached this step</title></rect>'
        )
        out.append(
            _text(
                left + max(reached[i], with_event[i]) * scale + 4,
                y + bar_h / 2 + 4,
                f"{reached[i]:,} ({percent(reached[i] / base)})"
                + ("" if with_event[i] == reached[i] else f" · any: {with_event[i]:,}"),
                size=11,
                color=INK,
            )
        )
    out.append(f'<line x1="{left}" x2="{left}" y1="{top}" y2="{height - bottom}" stroke="{MUTED}"/>')
    out.append(_text(left + plot_w / 2, height - 22, "sessions", anchor="middle", color=INK))
    out.append(
        _legend(
            [Series("through every earlier step", [], BLUE), Series("with the event at all", [], LIGHT)], 10, height - 4
        )
    )
    out.append("</svg>")
    return "".join(out)
