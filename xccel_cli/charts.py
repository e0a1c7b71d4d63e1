"""Small server-side SVG charts for the dashboard: bars, horizontal bar panels, lines, a funnel.

Every chart is one inline <svg role="img"> with a <title> and <desc> (its accessible name and summary),
axis labels with units, and no external reference of any kind. All text passes through escape().

A chart is drawn for a given width (the viewBox); the page holds one drawing per layout (desktop, phone) and
CSS shows the one that fits, so a phone gets a chart laid out for it instead of a desktop chart scaled down:
text is never smaller than MIN_FONT in the viewBox, and the viewBox is never shown much narrower than itself.
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
FONT = 13
MIN_FONT = 12  # ticks and value labels; with the page's CSS a chart is shown at >= 0.92 of its width
CHAR_WIDTH = 0.62  # average advance of a sans-serif character, in font sizes (for fitting labels)
DESKTOP = 520  # widths a chart is drawn at
PHONE = 340
WIDE = 1040
# The layouts a chart is drawn for, (name, width): the first drawing carries the chart's id, the others add the
# layout's name to it (chart-x, chart-x-phone); the page's CSS shows the one that fits the screen.
LAYOUTS: tuple[tuple[str, int], ...] = (("desktop", DESKTOP), ("phone", PHONE))


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float | None]
    color: str = BLUE
    intervals: Sequence[tuple[float, float] | None] | None = None  # drawn as whiskers (e.g. 95 % intervals)


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


def text_width(content: str, size: int = FONT) -> float:
    return len(content) * size * CHAR_WIDTH


def _legend(series: Sequence[Series], x: float, y: float, width: float) -> tuple[str, float]:
    """Legend entries from (x, y), wrapping onto the next line (18 px down) before width; returns the
    markup and the y of its last line."""
    parts = []
    start = x
    for item in series:
        needed = 14 + text_width(item.name) + 12
        if x > start and x + needed > width:
            x, y = start, y + 18
        parts.append(f'<rect x="{x:.1f}" y="{y - 10:.1f}" width="10" height="10" fill="{item.color}"/>')
        parts.append(_text(x + 14, y, item.name, color=INK))
        x += needed
    return "".join(parts), y


def _legend_lines(series: Sequence[Series], x: float, width: float) -> int:
    return int(_legend(series, x, 0, width)[1] // 18) + 1


def wrap(content: str, size: int, width: float) -> list[str]:
    """Words of content in lines that fit width (a word longer than a line gets its own line)."""
    lines: list[str] = []
    for word in content.split():
        if lines and text_width(lines[-1] + " " + word, size) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


def _notes(notes: Sequence[str], x: float, y: float, width: float) -> tuple[str, float]:
    """Notes written on the chart (what it leaves out, what a mark means), wrapped; returns markup and height."""
    out = []
    for note in notes:
        for line in wrap(note, MIN_FONT, width - x):
            out.append(_text(x, y, line, size=MIN_FONT, color=INK, extra=' class="note"'))
            y += 16
    return "".join(out), 16 * sum(len(wrap(note, MIN_FONT, width - x)) for note in notes)


def _y_axis_label(label: str, top: float, plot_h: float) -> str:
    return _text(
        14,
        top + plot_h / 2,
        label,
        anchor="middle",
        color=INK,
        extra=f' transform="rotate(-90 14 {top + plot_h / 2:.1f})"',
    )


def _thinning(labels: Sequence[str], room: float, size: int = MIN_FONT) -> int:
    """Write every n-th category label so that labels never overlap."""
    if not labels:
        return 1
    needed = max(text_width(label, size) for label in labels) + 8
    return max(1, math.ceil(len(labels) / max(room / needed, 1)))


def truncate(label: str, limit: int) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def variants(chart_id: str, draw: Callable[[str, int], str], layouts: Sequence[tuple[str, int]] = LAYOUTS) -> str:
    """The chart drawn for every layout by draw(svg_id, width), each in a box CSS shows only on screens it fits."""
    return "".join(
        f'<div class="v-{layout}">{draw(chart_id if i == 0 else f"{chart_id}-{layout}", width)}</div>'
        for i, (layout, width) in enumerate(layouts)
    )


def empty_chart(chart_id: str, title: str, message: str, width: int = DESKTOP, height: int = 120) -> str:
    """The frame of a chart with nothing to draw, saying why."""
    lines = wrap(message, FONT, width - 20)
    y0 = height / 2 + 4 - 8 * (len(lines) - 1)
    return (
        _open(chart_id, title, message, width, height)
        + f'<rect x="0.5" y="0.5" width="{width - 1}" height="{height - 1}" fill="#f7f9fc" stroke="{GRID}"/>'
        + "".join(_text(width / 2, y0 + 16 * i, line, anchor="middle") for i, line in enumerate(lines))
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
    notes: Sequence[str] = (),
    width: int = DESKTOP,
    height: int = 300,
) -> str:
    """Vertical bars per category (grouped when several series); marker = (category position, label)
    draws a dashed line, e.g. at the median (position 2.5 = halfway between categories 2 and 3)."""
    left = 26 + max(text_width(fmt(t), MIN_FONT) for t in nice_ticks(_top(series))) + 8
    right, top = 12, 34
    legend_rows = _legend_lines(series, 8, width) if len(series) > 1 else 0
    note_h = _notes(notes, 8, 0, width)[1]
    bottom = 44 + 18 * legend_rows + note_h
    plot_w, plot_h = width - left - right, height - top - bottom
    ticks = nice_ticks(_top(series))
    scale = plot_h / ticks[-1]
    slot = plot_w / max(len(categories), 1)
    bar_w = max(1.0, slot * 0.8 / max(len(series), 1))
    out = [_open(chart_id, title, description, width, height)]
    for tick in ticks:
        y = top + plot_h - tick * scale
        out.append(f'<line x1="{left:.1f}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        out.append(_text(left - 6, y + 4, fmt(tick), anchor="end", size=MIN_FONT))
    every = _thinning(categories, plot_w)
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
            out.append(_text(left + (i + 0.5) * slot, top + plot_h + 15, category, anchor="middle", size=MIN_FONT))
    out.append(f'<line x1="{left:.1f}" x2="{width - right}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="{MUTED}"/>')
    if marker is not None:
        position, label = marker
        x = left + (position + 0.5) * slot
        out.append(
            f'<line class="marker" x1="{x:.1f}" x2="{x:.1f}" y1="{top - 4}" y2="{top + plot_h}" '
            f'stroke="{INK}" stroke-width="1.5" stroke-dasharray="5 3"/>'
        )
        anchor = "end" if x + 4 + text_width(label) > width - right else "start"
        out.append(_text(x + (-4 if anchor == "end" else 4), top + 8, label, anchor=anchor, color=INK, weight="bold"))
    out.append(_text(left + plot_w / 2, top + plot_h + 34, x_label, anchor="middle", color=INK))
    out.append(_y_axis_label(y_label, top, plot_h))
    y = top + plot_h + 54
    if len(series) > 1:
        legend, y = _legend(series, 8, y, width)
        out.append(legend)
        y += 18
    out.append(_notes(notes, 8, y, width)[0])
    out.append("</svg>")
    return "".join(out)


def _top(series: Sequence[Series]) -> float:
    values = [v for s in series for v in s.values if v is not None]
    values += [hi for s in series for bounds in (s.intervals or ()) if bounds is not None for hi in bounds[1:]]
    return max(values, default=0)


def _whisker(x_low: float, x_high: float, y: float, color: str, label: str) -> str:
    """A horizontal interval with end caps."""
    return (
        f'<g class="interval"><title>{escape(label)}</title>'
        f'<line x1="{x_low:.1f}" x2="{x_high:.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="{color}" stroke-width="1.5"/>'
        f'<line x1="{x_low:.1f}" x2="{x_low:.1f}" y1="{y - 5:.1f}" y2="{y + 5:.1f}" stroke="{color}" '
        'stroke-width="1.5"/>'
        f'<line x1="{x_high:.1f}" x2="{x_high:.1f}" y1="{y - 5:.1f}" y2="{y + 5:.1f}" stroke="{color}" '
        'stroke-width="1.5"/></g>'
    )


def _panel_bars(
    panel: Panel, labels: Sequence[str], x0: float, plot_w: float, row_y: Sequence[float], bar_room: float
) -> list[str]:
    """One panel's grid, bars, whiskers and value labels; row_y[i] is the top of row i's bar area."""
    ticks = nice_ticks(_top(panel.series), 4)
    scale = plot_w / ticks[-1]
    out = []
    bar_h = bar_room / max(len(panel.series), 1)
    for row, label in enumerate(labels):
        for j, item in enumerate(panel.series):
            value = item.values[row]
            if value is None:
                continue
            y = row_y[row] + j * bar_h
            w = value * scale
            out.append(
                f'<rect x="{x0:.1f}" y="{y:.1f}" width="{w:.1f}" height="{bar_h:.1f}" '
                f'fill="{item.color}"><title>{escape(label)}, {escape(item.name)}: '
                f"{escape(panel.fmt(value))}</title></rect>"
            )
            end = w
            text = panel.fmt(value)
            bounds = item.intervals[row] if item.intervals else None
            if bounds is not None:
                low, high = bounds
                out.append(
                    _whisker(
                        x0 + low * scale,
                        x0 + high * scale,
                        y + bar_h / 2,
                        INK,
                        f"{label}: 95% interval {panel.fmt(low)} to {panel.fmt(high)}",
                    )
                )
                end = max(end, high * scale)
                text += f" ({panel.fmt(low)}–{panel.fmt(high)})"
            out.append(_text(x0 + end + 5, y + bar_h / 2 + 4, text, size=MIN_FONT, color=INK))
    return out


def _panel_axis(panel: Panel, x0: float, plot_w: float, top: float, bottom: float, room: float) -> list[str]:
    """Grid, ticks and axis label of one panel; the label is centred under the plot where it fits in room
    (the panel's whole width from x0), else moved in so that it is never cut."""
    ticks = nice_ticks(_top(panel.series), 4)
    scale = plot_w / ticks[-1]
    every = _thinning([panel.fmt(t) for t in ticks], plot_w)
    out = []
    for i, tick in enumerate(ticks):
        x = x0 + tick * scale
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{bottom}" stroke="{GRID}"/>')
        if i % every == 0:
            out.append(_text(x, bottom + 15, panel.fmt(tick), anchor="middle", size=MIN_FONT))
    out.append(f'<line x1="{x0:.1f}" x2="{x0:.1f}" y1="{top}" y2="{bottom}" stroke="{MUTED}"/>')
    half = text_width(panel.x_label) / 2
    centre = min(max(x0 + plot_w / 2, x0 + half), x0 + room - half)
    out.append(_text(centre, bottom + 34, panel.x_label, anchor="middle", color=INK))
    return out


def _value_room(panel: Panel) -> float:
    """Room after the longest bar for its value label (and its interval, when there is one)."""
    longest = 0.0
    for item in panel.series:
        for row, value in enumerate(item.values):
            if value is None:
                continue
            text = panel.fmt(value)
            bounds = item.intervals[row] if item.intervals else None
            if bounds is not None:
                text += f" ({panel.fmt(bounds[0])}–{panel.fmt(bounds[1])})"
            longest = max(longest, text_width(text, MIN_FONT))
    return longest + 10


def hbar_panels(
    *,
    chart_id: str,
    title: str,
    description: str,
    labels: Sequence[str],
    panels: Sequence[Panel],
    width: int = WIDE,
    stacked: bool = False,
    label_width: int = 190,
    row_height: int = 30,
) -> str:
    """Horizontal bars, one row per label. Side by side: panels in columns sharing a label column.
    Stacked (narrow screens): the panels one under the other, each row's label written above its bars."""
    if stacked:
        return _hbar_stacked(chart_id, title, description, labels, panels, width)
    bottom, gap = 58, 26
    panel_w = (width - label_width - gap * len(panels)) / max(len(panels), 1)
    legend_lines = max(
        (_legend_lines(p.series, 0, panel_w) for p in panels if len(p.series) > 1),
        default=0,
    )
    top = 40 + 18 * legend_lines
    height = top + bottom + row_height * len(labels)
    limit = int((label_width - 12) / (MIN_FONT * CHAR_WIDTH))
    out = [_open(chart_id, title, description, width, height)]
    for row, label in enumerate(labels):
        y = top + row * row_height + row_height / 2 + 4
        out.append(
            _text(
                label_width - 8,
                y,
                truncate(label, limit),
                anchor="end",
                color=INK,
                size=MIN_FONT,
                extra="" if len(label) <= limit else f' data-full="{escape(label)}"',
            )
        )
    plot_h = row_height * len(labels)
    row_y = [top + row * row_height + row_height * 0.15 for row in range(len(labels))]
    for p, panel in enumerate(panels):
        x0 = label_width + p * (panel_w + gap) + 6
        plot_w = panel_w - _value_room(panel)
        out.append(_text(x0, 18, panel.title, color=INK, weight="bold"))
        out += _panel_axis(panel, x0, plot_w, top, top + plot_h, panel_w)
        out += _panel_bars(panel, labels, x0, plot_w, row_y, row_height * 0.7)
        if len(panel.series) > 1:
            out.append(_legend(panel.series, x0, 36, x0 + panel_w)[0])
    out.append("</svg>")
    return "".join(out)


def _hbar_stacked(
    chart_id: str, title: str, description: str, labels: Sequence[str], panels: Sequence[Panel], width: int
) -> str:
    left, right = 8, 8
    label_h, bar_room, row_gap = 18, 18, 8
    limit = int((width - left - right) / (MIN_FONT * CHAR_WIDTH))
    out: list[str] = []
    y = 0.0
    for panel in panels:
        y += 22
        out.append(_text(left, y, panel.title, color=INK, weight="bold"))
        if len(panel.series) > 1:
            legend, y = _legend(panel.series, left, y + 20, width)
            out.append(legend)
        y += 10
        top = y
        row_y = []
        for _label in labels:
            row_y.append(y + label_h)
            y += label_h + bar_room * max(len(panel.series), 1) + row_gap
        plot_w = width - left - right - _value_room(panel)
        out += _panel_axis(panel, left + 1, plot_w, top, y, width - left - right)
        out += _panel_bars(panel, labels, left + 1, plot_w, row_y, bar_room * max(len(panel.series), 1))
        for label, bar_top in zip(labels, row_y, strict=True):  # over the grid lines, with a white halo
            out.append(
                _text(
                    left + 3,
                    bar_top - 5,
                    truncate(label, limit),
                    color=INK,
                    size=MIN_FONT,
                    extra=' paint-order="stroke" stroke="#fff" stroke-width="4"'
                    + ("" if len(label) <= limit else f' data-full="{escape(label)}"'),
                )
            )
        y += 48
    height = math.ceil(y)
    return _open(chart_id, title, description, width, height) + "".join(out) + "</svg>"


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
    partial: Sequence[bool] | None = None,
    notes: Sequence[str] = (),
    width: int = DESKTOP,
    height: int = 300,
) -> str:
    """Lines over ordered categories (days), with a dot per value when there are few.

    partial[i] marks a category the data covers only in part (a day the dump starts or ends in): its values
    are drawn as open circles, joined to their neighbours by a dotted line only, so a half-observed day does
    not read as a rise or a fall."""
    partial = partial or [False] * len(categories)
    left = 26 + max(text_width(fmt(t), MIN_FONT) for t in nice_ticks(_top(series))) + 8
    right, top = 6 + text_width(categories[-1] if categories else "", MIN_FONT) / 2, 34
    legend_rows = _legend_lines(series, 8, width)
    note_h = _notes(notes, 8, 0, width)[1]
    bottom = 44 + 18 * legend_rows + note_h
    plot_w, plot_h = width - left - right, height - top - bottom
    ticks = nice_ticks(_top(series))
    scale = plot_h / ticks[-1]
    step = plot_w / max(len(categories) - 1, 1)

    def point(i: int, value: float) -> tuple[float, float]:
        x = left + (i * step if len(categories) > 1 else plot_w / 2)
        return x, top + plot_h - value * scale

    out = [_open(chart_id, title, description, width, height)]
    for tick in ticks:
        y = top + plot_h - tick * scale
        out.append(f'<line x1="{left:.1f}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        out.append(_text(left - 6, y + 4, fmt(tick), anchor="end", size=MIN_FONT))
    every = _thinning(categories, plot_w + step)
    for i, category in enumerate(categories):
        if i % every == 0:
            x, _ = point(i, 0)
            out.append(_text(x, top + plot_h + 15, category, anchor="middle", size=MIN_FONT))
    for item in series:
        runs: list[list[tuple[float, float]]] = [[]]
        dotted: list[tuple[tuple[float, float], tuple[float, float]]] = []
        previous: tuple[int, float] | None = None
        for i, value in enumerate(item.values):
            if value is None:
                runs.append([])  # a gap in the data is a gap in the line
                previous = None
                continue
            if partial[i]:
                runs.append([])
                if previous is not None:
                    dotted.append((point(*previous), point(i, value)))
            elif previous is not None and partial[previous[0]]:
                dotted.append((point(*previous), point(i, value)))
                runs[-1].append(point(i, value))
            else:
                runs[-1].append(point(i, value))
            previous = (i, value)
        for run in runs:
            if len(run) > 1:
                path = " ".join(f"{x:.1f},{y:.1f}" for x, y in run)
                out.append(f'<polyline points="{path}" fill="none" stroke="{item.color}" stroke-width="2"/>')
        for (x1, y1), (x2, y2) in dotted:
            out.append(
                f'<line class="partial" x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
                f'stroke="{item.color}" stroke-width="1.5" stroke-dasharray="2 3"/>'
            )
        for i, value in enumerate(item.values):
            if value is None or not (partial[i] or len(categories) <= 40):
                continue
            x, y = point(i, value)
            if partial[i]:
                look, what = 'class="partial" r="4" fill="#fff"', f"{categories[i]} (partial day)"
            else:
                look, what = f'r="3" fill="{item.color}"', categories[i]
            out.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" {look} stroke="{item.color}" stroke-width="1.5"><title>'
                f"{escape(item.name)}, {escape(what)}: {escape(fmt(value))}</title></circle>"
            )
    out.append(f'<line x1="{left:.1f}" x2="{width - right}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="{MUTED}"/>')
    out.append(_text(left + plot_w / 2, top + plot_h + 34, x_label, anchor="middle", color=INK))
    out.append(_y_axis_label(y_label, top, plot_h))
    legend, y = _legend(series, 8, top + plot_h + 54, width)
    out.append(legend)
    out.append(_notes(notes, 8, y + 18, width)[0])
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
    width: int = DESKTOP,
) -> str:
    """One bar per step, its label and figures written above it: dark = sessions that reached it through
    every earlier step, light behind it = sessions holding the step's event at all. Percentages are of the
    first step."""
    left, right, row_h = 8, 8, 44
    top = 8
    plot_w = width - left - right
    base = max(reached[0] if reached else 0, 1)
    scale = plot_w / max([*with_event, *reached, 1])
    out: list[str] = []
    y = float(top)
    for i, step in enumerate(steps):
        figures = f"{reached[i]:,} ({percent(reached[i] / base)})" + (
            "" if with_event[i] == reached[i] else f" · any: {with_event[i]:,}"
        )
        out.append(_text(left, y + 13, step, color=INK, size=FONT, weight="bold"))
        out.append(_text(width - right, y + 13, figures, anchor="end", color=INK, size=MIN_FONT))
        bar_y = y + 19
        out.append(
            f'<rect x="{left}" y="{bar_y:.1f}" width="{with_event[i] * scale:.1f}" height="18" '
            f'fill="{LIGHT}"><title>{escape(step)}: {with_event[i]:,} sessions hold this event</title></rect>'
        )
        out.append(
            f'<rect x="{left}" y="{bar_y:.1f}" width="{reached[i] * scale:.1f}" height="18" '
            f'fill="{BLUE}"><title>{escape(step)}: {reached[i]:,} sessions reached this step</title></rect>'
        )
        y += row_h
    legend, y = _legend(
        [Series("through every earlier step", [], BLUE), Series("with the event at all", [], LIGHT)],
        left,
        y + 14,
        width,
    )
    out.append(legend)
    height = math.ceil(y + 8)
    return _open(chart_id, title, description, width, height) + "".join(out) + "</svg>"
