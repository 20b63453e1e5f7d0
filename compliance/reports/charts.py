"""The compliance report's charts, drawn server-side with ReportLab's graphics.

Each function takes labels and numbers the report module has already cleaned and returns a
``Drawing``, a flowable that sits in the story like a paragraph. Text in a drawing uses the
embedded Vera fonts (registered by ``compliance.reports.pdf``), so it stays extractable.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from reportlab.graphics.charts.barcharts import (  # type: ignore[import-untyped]
    HorizontalBarChart,
    VerticalBarChart,
)
from reportlab.graphics.charts.legends import Legend  # type: ignore[import-untyped]
from reportlab.graphics.shapes import Drawing, Line, String  # type: ignore[import-untyped]
from reportlab.lib import colors  # type: ignore[import-untyped]
from reportlab.pdfbase.pdfmetrics import stringWidth  # type: ignore[import-untyped]

FONT = "Vera"
FONT_BOLD = "Vera-Bold"

INK = colors.HexColor("#1f2933")
MUTED = colors.HexColor("#616e7c")
GRID = colors.HexColor("#d9dee3")
BLUE = colors.HexColor("#2f6690")
TEAL = colors.HexColor("#3a7d44")
RED = colors.HexColor("#b42318")
GREY = colors.HexColor("#9aa5b1")

#: Series colours of the stacked chart, in order; distinguishable in greyscale print too.
SERIES = [
    colors.HexColor("#b42318"),
    colors.HexColor("#f79009"),
    colors.HexColor("#6941c6"),
    colors.HexColor("#2f6690"),
    colors.HexColor("#81b29a"),
    colors.HexColor("#344054"),
]

#: The four-fifths rule: an impact ratio below this is a disparity signal.
FOUR_FIFTHS = 0.8

_TITLE_SPACE = 18
_AXIS_SPACE = 30


def fit(text: str, width: float, *, font: str = FONT, size: float = 7) -> str:
    """``text`` cut (with an ellipsis) to at most ``width`` points when drawn."""
    if stringWidth(text, font, size) <= width:
        return text
    while text and stringWidth(text + "\u2026", font, size) > width:
        text = text[: max(0, min(len(text) - 1, int(len(text) * 0.9)))]
    return text.rstrip() + "\u2026"


def _sparse(labels: Sequence[str], most: int = 12) -> list[str]:
    """Every k-th label, blanks between, so a month of days stays readable."""
    step = max(1, math.ceil(len(labels) / most))
    return [label if i % step == 0 else "" for i, label in enumerate(labels)]


def _title(drawing: Drawing, text: str) -> None:
    drawing.add(String(0, drawing.height - 11, text, fontName=FONT_BOLD, fontSize=9, fillColor=INK))


def _style_axes(chart: VerticalBarChart | HorizontalBarChart) -> None:
    for axis in (chart.categoryAxis, chart.valueAxis):
        axis.labels.fontName = FONT
        axis.labels.fontSize = 7
        axis.labels.fillColor = MUTED
        axis.strokeColor = GREY
    chart.valueAxis.visibleGrid = True
    chart.valueAxis.gridStrokeColor = GRID
    chart.valueAxis.gridStrokeWidth = 0.5
    chart.valueAxis.valueMin = 0
    chart.valueAxis.forceZero = True


def _scale(chart: VerticalBarChart, top: float, *, counts: bool) -> None:
    """A positive range when every value is 0; whole-number ticks for small counts."""
    if top <= 0:
        chart.valueAxis.valueMax = 1
    if counts and top < 5:
        chart.valueAxis.valueStep = 1


def _category_labels(chart: VerticalBarChart, labels: Sequence[str], most: int) -> None:
    chart.categoryAxis.categoryNames = _sparse(labels, most)
    chart.categoryAxis.tickDown = 3
    chart.categoryAxis.labels.dy = -4


def daily_bars(
    labels: Sequence[str],
    values: Sequence[float],
    *,
    title: str,
    width: float,
    color: colors.Color = BLUE,
    value_format: Callable[[float], str] | str | None = None,
    counts: bool = True,
    height: float = 150,
) -> Drawing:
    """A bar chart of one value per day: a count (requests), or with ``counts=False`` an
    amount (cost)."""
    drawing = Drawing(width, height)
    _title(drawing, title)
    chart = VerticalBarChart()
    chart.x, chart.y = 42, _AXIS_SPACE - 10
    chart.width, chart.height = width - chart.x - 4, height - _TITLE_SPACE - chart.y - 6
    chart.data = [list(values)]
    _category_labels(chart, labels, 12)
    chart.bars[0].fillColor = color
    chart.bars[0].strokeColor = None
    chart.groupSpacing = 2 if len(values) > 20 else 5
    _style_axes(chart)
    _scale(chart, max(values, default=0), counts=counts)
    if value_format is not None:
        chart.valueAxis.labelTextFormat = value_format
    drawing.add(chart)
    return drawing


def stacked_bars(
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float]]],
    *,
    title: str,
    width: float,
    height: float = 170,
) -> Drawing:
    """A stacked bar chart, one bar per label, one coloured band per named series."""
    drawing = Drawing(width, height)
    _title(drawing, title)
    legend_width = 120
    chart = VerticalBarChart()
    chart.x, chart.y = 42, _AXIS_SPACE - 10
    chart.width = width - chart.x - legend_width - 10
    chart.height = height - _TITLE_SPACE - chart.y - 6
    chart.data = [list(values) for _, values in series]
    chart.categoryAxis.style = "stacked"
    _category_labels(chart, labels, 10)
    for i in range(len(series)):
        chart.bars[i].fillColor = SERIES[i % len(SERIES)]
        chart.bars[i].strokeColor = None
    chart.groupSpacing = 4
    _style_axes(chart)
    totals = [sum(column) for column in zip(*chart.data, strict=True)] if series else []
    _scale(chart, max(totals, default=0), counts=True)
    drawing.add(chart)
    drawing.add(_legend(series, x=width - legend_width, y=chart.y + chart.height))
    return drawing


def _legend(series: Sequence[tuple[str, Sequence[float]]], *, x: float, y: float) -> Legend:
    legend = Legend()
    legend.x, legend.y = x, y
    legend.alignment = "right"
    legend.fontName = FONT
    legend.fontSize = 7.5
    legend.fillColor = INK
    legend.dx = legend.dy = 7
    legend.deltay = 11
    legend.columnMaximum = 10
    legend.strokeColor = None
    legend.colorNamePairs = [(SERIES[i % len(SERIES)], name) for i, (name, _) in enumerate(series)]
    return legend


def impact_ratios(
    labels: Sequence[str],
    ratios: Sequence[float],
    flagged: Sequence[bool],
    *,
    title: str,
    width: float,
) -> Drawing:
    """Horizontal bars of impact ratios, flagged findings in red, with the 0.8 line."""
    row = 15
    label_space = min(210, width * 0.42)
    height = _TITLE_SPACE + 26 + row * len(ratios)
    drawing = Drawing(width, height)
    _title(drawing, title)
    chart = HorizontalBarChart()
    chart.x, chart.y = label_space, 18
    chart.width = width - label_space - 30
    chart.height = row * len(ratios)
    chart.data = [list(ratios)]
    chart.categoryAxis.categoryNames = [fit(label, label_space - 8) for label in labels]
    chart.categoryAxis.reverseDirection = 1  # the first finding on top, as in the tables
    chart.bars[0].strokeColor = None
    for i, is_flagged in enumerate(flagged):
        chart.bars[(0, i)].fillColor = RED if is_flagged else TEAL
    chart.barLabelFormat = "%.2f"
    chart.barLabels.fontName = FONT
    chart.barLabels.fontSize = 7
    chart.barLabels.boxAnchor = "w"
    chart.barLabels.dx = 3
    _style_axes(chart)
    top = max(1.0, max(ratios, default=1.0))
    chart.valueAxis.valueMax = top
    chart.valueAxis.valueStep = 0.2 if top <= 1.0 else None
    chart.valueAxis.labelTextFormat = "%.1f"
    _four_fifths_line(drawing, chart, top)  # under the bars: it shows between them
    drawing.add(chart)
    return drawing


def _four_fifths_line(drawing: Drawing, chart: HorizontalBarChart, top: float) -> None:
    x = chart.x + chart.width * FOUR_FIFTHS / top
    y_top = chart.y + chart.height
    drawing.add(
        Line(x, chart.y, x, y_top + 4, strokeColor=RED, strokeWidth=1, strokeDashArray=[3, 2])
    )
    drawing.add(
        String(x, y_top + 6, "0.8 (four-fifths rule)", fontName=FONT, fontSize=7,
               fillColor=RED, textAnchor="middle")
    )  # fmt: skip
