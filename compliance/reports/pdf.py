"""The compliance report as a PDF a compliance officer files (docs/report-pdf.md).

:func:`report_pdf` renders a collected, signed report (the dict of docs/reports.md) with
ReportLab's platypus: a title page, the contents, nine numbered sections with tables and
charts, "Page N of M" on every page. pypdf then attaches the signed JSON as ``report.json``
and writes the report id and content hash into the document's metadata, which
:func:`report_attachment` and :func:`report_pdf_metadata` read back.

Every string from the report is cleaned before it is drawn: control and format characters
and NUL are removed, characters the embedded Vera fonts cannot draw become ``?``, long
values are cut with an ellipsis (the attached JSON keeps them whole), and the result is
XML-escaped, since a ``Paragraph`` reads its text as markup.
"""

from __future__ import annotations

import functools
import io
import math
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import reportlab  # type: ignore[import-untyped]
from pypdf import PdfReader, PdfWriter
from reportlab.lib import colors  # type: ignore[import-untyped]
from reportlab.lib.enums import TA_RIGHT  # type: ignore[import-untyped]
from reportlab.lib.pagesizes import A4  # type: ignore[import-untyped]
from reportlab.lib.styles import ParagraphStyle  # type: ignore[import-untyped]
from reportlab.lib.units import mm  # type: ignore[import-untyped]
from reportlab.pdfbase import pdfmetrics  # type: ignore[import-untyped]
from reportlab.pdfbase.ttfonts import TTFont  # type: ignore[import-untyped]
from reportlab.pdfgen.canvas import Canvas  # type: ignore[import-untyped]
from reportlab.platypus import (  # type: ignore[import-untyped]
    BaseDocTemplate,
    CondPageBreak,
    Flowable,
    Frame,
    KeepTogether,
    NextPageTemplate,
    PageBreak,
    PageTemplate,
    Paragraph,
    Spacer,
    Table,
    TableStyle,
)
from reportlab.platypus.tableofcontents import TableOfContents  # type: ignore[import-untyped]

from compliance.reports import charts
from compliance.reports.charts import FONT, FONT_BOLD

ATTACHMENT_NAME = "report.json"
FONT_ITALIC = "Vera-Italic"
FONT_BOLD_ITALIC = "Vera-BoldItalic"

_MARGIN = 18 * mm
_WIDTH = A4[0] - 2 * _MARGIN
_MAX_ROWS = 1000  # rows a table shows; the attached JSON has every row
_MAX_FINDINGS = 300  # findings detailed in section 5, across runs
_CHART_ROWS = 30  # findings per impact-ratio chart

_HEX64 = re.compile(r"[0-9a-f]{64}")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]{1,512}={0,2}")
_MONTHS = (
    "January February March April May June July August September October November December"
).split()

_RED = "#b42318"
_GREEN = "#1b7a3d"
_INK = colors.HexColor("#1f2933")
_HEAD_BG = colors.HexColor("#2f4858")
_ZEBRA = colors.HexColor("#f2f4f7")
_RULE = colors.HexColor("#c5ccd3")

SECTIONS = (
    "Summary",
    "Usage and cost",
    "Policy outcomes",
    "Audit trail and receipt chain verification",
    "Bias findings",
    "Changes to keys, members and settings",
    "Retention configuration",
    "High-risk decisions",
    "Integrity",
)


class ReportPdfError(ValueError):
    """The report dict (or an argument of :func:`report_pdf`) is missing a key or has a
    value of the wrong type; the message names the path, e.g. ``usage.by_day[3].cost_eur``."""


# --- reading the report dict -----------------------------------------------------------


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


class _Node:
    """One object of the report with its path, for typed reads with clear errors."""

    __slots__ = ("_data", "path")

    def __init__(self, data: object, path: str) -> None:
        if not isinstance(data, Mapping):
            raise ReportPdfError(f"{path or 'report'}: expected an object, got {_kind(data)}")
        self._data = data
        self.path = path

    def _at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def _get(self, key: str, *, optional: bool = False) -> Any:
        if key in self._data:
            return self._data[key]
        if optional:
            return None
        raise ReportPdfError(f"{self._at(key)}: missing")

    def _wrong(self, key: str, expected: str) -> ReportPdfError:
        return ReportPdfError(f"{self._at(key)}: expected {expected}, got {_kind(self._data[key])}")

    def opt_text(self, key: str) -> str | None:
        value = self._get(key, optional=True)
        if value is None or isinstance(value, str):
            return value
        raise self._wrong(key, "a string")

    def text(self, key: str) -> str:
        value = self._get(key)
        if not isinstance(value, str):
            raise self._wrong(key, "a string")
        return value

    def texts(self, key: str) -> list[str]:
        values = self._get(key)
        if not isinstance(values, list | tuple) or not all(isinstance(v, str) for v in values):
            raise self._wrong(key, "a list of strings")
        return list(values)

    def opt_integer(self, key: str) -> int | None:
        value = self._get(key, optional=True)
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            return value
        raise self._wrong(key, "an integer")

    def integer(self, key: str) -> int:
        value = self._get(key)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self._wrong(key, "an integer")
        return value

    def number(self, key: str) -> float | None:
        """A float, or None when absent, null, NaN or infinite (all shown as "n/a")."""
        value = self._get(key, optional=True)
        if value is None:
            return None
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise self._wrong(key, "a number")
        number = float(value)
        return number if number == number and abs(number) != float("inf") else None

    def flag(self, key: str) -> bool:
        value = self._get(key)
        if not isinstance(value, bool):
            raise self._wrong(key, "true or false")
        return value

    def money(self, key: str) -> Decimal:
        value = self._get(key)
        if not isinstance(value, str) or len(value) > 40:
            raise self._wrong(key, "a decimal string")
        try:
            amount = Decimal(value)
        except InvalidOperation:
            amount = Decimal("NaN")
        if not amount.is_finite() or abs(amount) >= 10**15:
            raise ReportPdfError(f"{self._at(key)}: {value[:40]!r} is not an amount in EUR")
        return amount

    def node(self, key: str) -> _Node:
        return _Node(self._get(key), self._at(key))

    def opt_node(self, key: str) -> _Node | None:
        value = self._get(key, optional=True)
        return None if value is None else _Node(value, self._at(key))

    def nodes(self, key: str) -> list[_Node]:
        values = self._get(key)
        if not isinstance(values, list | tuple):
            raise self._wrong(key, "a list")
        return [_Node(v, f"{self._at(key)}[{i}]") for i, v in enumerate(values)]


# --- text and numbers ------------------------------------------------------------------


@functools.cache
def _drawable() -> frozenset[int]:
    """Registers the Vera fonts ReportLab ships; answers the code points all four draw."""
    folder = Path(reportlab.__file__).parent / "fonts"
    faces = {
        FONT: "Vera.ttf",
        FONT_BOLD: "VeraBd.ttf",
        FONT_ITALIC: "VeraIt.ttf",
        FONT_BOLD_ITALIC: "VeraBI.ttf",
    }
    covered: set[int] | None = None
    for name, file in faces.items():
        font = TTFont(name, str(folder / file))
        pdfmetrics.registerFont(font)
        points = set(font.face.charToGlyph)
        covered = points if covered is None else covered & points
    pdfmetrics.registerFontFamily(
        FONT, normal=FONT, bold=FONT_BOLD, italic=FONT_ITALIC, boldItalic=FONT_BOLD_ITALIC
    )
    return frozenset(covered or ())


def _clean(value: str, limit: int = 200, *, drawable: bool = True) -> str:
    """The value without control/format characters or NUL, whitespace collapsed, at most
    ``limit`` characters; with ``drawable``, characters Vera cannot draw become ``?``."""
    points = _drawable() if drawable else frozenset()
    kept = []
    for char in unicodedata.normalize("NFC", value[: limit * 4]):
        if char in "\t\n\r\v\f":
            char = " "
        elif unicodedata.category(char)[0] == "C":
            continue
        elif drawable and ord(char) not in points:
            char = "?"
        kept.append(char)
    text = " ".join("".join(kept).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "\u2026"


def _t(value: str | None, limit: int = 200) -> str:
    """Paragraph markup for a string of the report: cleaned, then XML-escaped."""
    return escape(_clean(value, limit)) if value else "\u2014"


def _n(value: int | None) -> str:
    return "\u2014" if value is None else f"{value:,}"


def _count(number: int, singular: str, plural: str | None = None) -> str:
    return f"{_n(number)} {singular if number == 1 else plural or singular + 's'}"


def _eur(amount: Decimal) -> str:
    """Euros to the cent; an amount under a cent is written out (€0.0003), not as €0.00."""
    if amount == 0 or abs(amount) >= Decimal("0.01"):
        return f"\u20ac{amount.quantize(Decimal('0.01'), ROUND_HALF_EVEN):,}"
    return f"\u20ac{amount.normalize():f}"


def _fixed(value: float | None, places: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{places}f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


def _pvalue(value: float | None) -> str:
    if value is None:
        return "n/a"
    return "< 0.0001" if value < 0.0001 else f"{value:.4f}"


def _when(value: str | None) -> str:
    """An ISO timestamp as "2026-12-01 09:00 UTC"; anything else shown as given."""
    if not value:
        return "\u2014"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return _t(value, 40)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _long_date(day: date) -> str:
    return f"{day.day} {_MONTHS[day.month - 1]} {day.year}"


def _parse_day(node: _Node, key: str) -> date:
    try:
        return date.fromisoformat(node.text(key))
    except ValueError as error:
        raise ReportPdfError(f"{node._at(key)}: not an ISO date") from error


# --- styles and building blocks --------------------------------------------------------


@functools.cache
def _styles() -> dict[str, ParagraphStyle]:
    _drawable()
    base = ParagraphStyle("body", fontName=FONT, fontSize=9.5, leading=13, textColor=_INK)

    def style(name: str, **kwargs: Any) -> ParagraphStyle:
        return ParagraphStyle(name, parent=base, **kwargs)

    heading = {"fontName": FONT_BOLD, "keepWithNext": 1}
    return {
        "body": base,
        "title": style("title", fontName=FONT_BOLD, fontSize=24, leading=30, spaceAfter=6),
        "org": style("org", fontSize=16, leading=21, spaceAfter=4),
        "h1": style("h1", fontSize=15, leading=19, spaceBefore=14, spaceAfter=8, **heading),
        "h2": style("h2", fontSize=11.5, leading=15, spaceBefore=10, spaceAfter=5, **heading),
        "h3": style("h3", fontSize=10, leading=13, spaceBefore=8, spaceAfter=3, **heading),
        "note": style("note", fontName=FONT_ITALIC, fontSize=8.5, leading=11.5, spaceAfter=4),
        "cell": style("cell", fontSize=8, leading=10),
        "num": style("num", fontSize=8, leading=10, alignment=TA_RIGHT),
        "id": style("id", fontSize=7, leading=9),
        "head": style("head", fontName=FONT_BOLD, fontSize=8, leading=10,
                      textColor=colors.white),
        "head_num": style("head_num", fontName=FONT_BOLD, fontSize=8, leading=10,
                          textColor=colors.white, alignment=TA_RIGHT),
        "code": style("code", fontSize=8.5, leading=11),
        "badge": style("badge", fontName=FONT_BOLD, fontSize=13, leading=16,
                       textColor=colors.white, alignment=1),
        "toc": style("toc", fontSize=10.5, leading=16),
        "toc_page": style("toc_page", fontSize=10.5, leading=16, alignment=TA_RIGHT),
        # The border is drawn borderPadding outside the text: indents keep it in the margins.
        "empty": style("empty", fontName=FONT_BOLD, fontSize=11, leading=15,
                       borderColor=_RULE, borderWidth=0.8, borderPadding=8, leftIndent=8,
                       rightIndent=8, spaceBefore=18, spaceAfter=16, backColor=_ZEBRA),
    }  # fmt: skip


def _para(markup: str, style: str = "body") -> Paragraph:
    return Paragraph(markup, _styles()[style])


def _heading(text: str, style: str, key: str, level: int) -> Paragraph:
    """A heading the document template files in the outline (and, level 0, the contents);
    ``text`` is plain (already cleaned) text."""
    heading = Paragraph(escape(text), _styles()[style])
    heading.outline_entry = (level, text, key)
    return heading


def _section(number: int) -> list[Flowable]:
    title = f"{number} {SECTIONS[number - 1]}"
    return [CondPageBreak(60 * mm), _heading(title, "h1", f"section-{number}", 0)]


def _table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    widths: Sequence[float],
    *,
    numeric: Sequence[int] = (),
    ids: Sequence[int] = (),
    what: str = "rows",
) -> list[Flowable]:
    """A table of markup cells; the header repeats on each page it runs onto. ``widths``
    are fractions of the text width; ``numeric`` columns are right-aligned, ``ids`` columns
    (UUIDs, trace ids) set smaller."""
    shown = rows[:_MAX_ROWS]

    def style(column: int) -> str:
        return "num" if column in numeric else "id" if column in ids else "cell"

    data = [[_para(h, "head_num" if i in numeric else "head") for i, h in enumerate(header)]]
    data += [[_para(cell, style(i)) for i, cell in enumerate(row)] for row in shown]
    table = Table(data, colWidths=[w * _WIDTH for w in widths], repeatRows=1, hAlign="LEFT")
    table.setStyle(
        TableStyle(
            [
                ("BACKGROUND", (0, 0), (-1, 0), _HEAD_BG),
                ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, _ZEBRA]),
                ("LINEBELOW", (0, 0), (-1, -1), 0.4, _RULE),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("TOPPADDING", (0, 0), (-1, -1), 3),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 3),
            ]
        )
    )
    flowables: list[Flowable] = [table, Spacer(1, 6)]
    if len(rows) > len(shown):
        flowables.append(
            _para(
                f"The first {_n(len(shown))} of {_n(len(rows))} {what} are shown; the attached "
                f"{ATTACHMENT_NAME} holds all of them.",
                "note",
            )
        )
    return flowables


def _pairs(pairs: Sequence[tuple[str, str]], label_width: float = 0.34) -> list[Flowable]:
    """A two-column table of label and value, for key figures."""
    data = [[_para(f"<b>{label}</b>", "cell"), _para(value, "cell")] for label, value in pairs]
    table = Table(data, colWidths=[label_width * _WIDTH, (1 - label_width) * _WIDTH], hAlign="LEFT")
    table.setStyle(
        TableStyle(
            [
                ("LINEBELOW", (0, 0), (-1, -1), 0.4, _RULE),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("TOPPADDING", (0, 0), (-1, -1), 3),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 3),
            ]
        )
    )
    return [table, Spacer(1, 8)]


def _state(valid: bool) -> str:
    """VALID / INVALID in colour, as markup."""
    return f'<font color="{_GREEN}"><b>VALID</b></font>' if valid else (
        f'<font color="{_RED}"><b>INVALID</b></font>'
    )  # fmt: skip


def _badge(valid: bool, text: str) -> Table:
    """The verification state, prominent: a coloured box beside its explanation."""
    label = "VALID" if valid else "INVALID"
    table = Table(
        [[_para(label, "badge"), _para(text)]],
        colWidths=[0.2 * _WIDTH, 0.8 * _WIDTH],
        hAlign="LEFT",
    )
    table.setStyle(
        TableStyle(
            [
                ("BACKGROUND", (0, 0), (0, 0), colors.HexColor(_GREEN if valid else _RED)),
                ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
                ("LEFTPADDING", (1, 0), (1, 0), 10),
                ("TOPPADDING", (0, 0), (-1, -1), 6),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 6),
                ("BOX", (0, 0), (-1, -1), 0.8, _RULE),
            ]
        )
    )
    return table


# --- the sections ----------------------------------------------------------------------


def _sub(text: str, key: str) -> Paragraph:
    return _heading(text, "h2", key, 1)


def _title_page(root: _Node) -> list[Flowable]:
    organization = root.node("organization")
    start, end = _period(root)
    facts = [
        ("Tier", _t(organization.text("tier"))),
        ("Organisation id", _t(organization.text("id"))),
        ("Period", f"{_long_date(start)} to {_long_date(end)} (inclusive, UTC)"),
        ("Generated at", _when(root.text("generated_at"))),
        ("Report id", _t(root.text("id"))),
        ("Generated by", _t(root.text("generator"))),
    ]
    statement = (
        f"This report covers the organisation's use of the Aqta gateway from "
        f"{_long_date(start)} to {_long_date(end)}: requests and cost, policy outcomes, the "
        "verification of the tamper-evident audit trail and of the receipt chain, bias "
        "findings, changes to keys, members and settings, the retention configuration and "
        "high-risk decisions. The data it was rendered from is signed with Ed25519 and "
        f"attached to this file as {ATTACHMENT_NAME}; section 9 says how to verify it."
    )
    flowables: list[Flowable] = [
        Spacer(1, 28 * mm),
        _para("Compliance report", "title"),
        _para(_t(organization.text("name"), 300), "org"),
        Spacer(1, 10),
        *_pairs(facts, 0.26),
        _para(statement),
    ]
    if root.flag("empty"):
        flowables.append(_para("No activity was recorded in this period.", "empty"))
    return [*flowables, NextPageTemplate("body"), PageBreak()]


def _summary(root: _Node) -> list[Flowable]:
    usage, verification = root.node("usage"), root.node("verification")
    weeks = root.node("policy").nodes("weeks")
    runs = root.node("bias").nodes("runs")
    findings = [finding for run in runs for finding in run.nodes("findings")]
    flagged = sum(finding.text("status") == "flagged" for finding in findings)
    high_risk = root.node("high_risk")
    cost = usage.money("cost_eur")
    rounded = cost == cost.quantize(Decimal("0.01"))
    exact = "" if rounded else f" ({escape(str(cost))} EUR exactly)"
    bias = "No bias runs" if not runs else (
        f"{_n(flagged)} flagged of {_n(len(findings))} in {_count(len(runs), 'run')}"
    )  # fmt: skip
    facts = [
        ("Requests", f"{_n(usage.integer('requests'))} ({_n(usage.integer('errors'))} errors)"),
        ("Tokens", f"{_n(usage.integer('prompt_tokens'))} prompt, "
                   f"{_n(usage.integer('completion_tokens'))} completion"),
        ("Cost", f"{_eur(cost)}{exact}"),
        ("Requests blocked", _n(sum(week.integer("blocked") for week in weeks))),
        ("Requests suppressed", _n(sum(week.integer("suppressed") for week in weeks))),
        ("Audit trail", _chain_summary(verification.node("audit"))),
        ("Receipt chain", _chain_summary(verification.node("receipts"))),
        ("Bias findings", bias),
        ("Changes to keys, members and settings", _n(len(root.nodes("changes")))),
        ("High-risk decisions", f"{_n(high_risk.integer('decisions'))} "
                                f"({_n(high_risk.integer('blocked'))} blocked, "
                                f"{_n(high_risk.integer('flagged'))} flagged)"),
    ]  # fmt: skip
    flowables = _section(1)
    if root.flag("empty"):
        flowables.append(_para("No activity was recorded in this period.", "empty"))
    return [*flowables, *_pairs(facts)]


def _chain_summary(chain: _Node) -> str:
    breaks = len(chain.nodes("breaks"))
    found = f", {_count(breaks, 'break')}" if breaks else ""
    entries = _count(chain.integer("entries"), "entry", "entries")
    return f"{_state(chain.flag('valid'))}, {entries} checked{found}"


def _usage(root: _Node) -> list[Flowable]:
    usage = root.node("usage")
    by_model, by_day = usage.nodes("by_model"), usage.nodes("by_day")
    flowables = _section(2)
    days = [(day.text("day"), day.integer("requests"), day.money("cost_eur")) for day in by_day]
    requests = usage.integer("requests")
    if requests == 0 and not by_model and not any(count for _, count, _ in days):
        return [*flowables, _para("No requests in this period.")]
    flowables.append(
        _para(
            f"{_n(requests)} request{'s' if requests != 1 else ''}, "
            f"{_n(usage.integer('errors'))} of them errors; "
            f"{_n(usage.integer('prompt_tokens'))} prompt and "
            f"{_n(usage.integer('completion_tokens'))} completion tokens; "
            f"cost {_eur(usage.money('cost_eur'))}."
        )
    )
    if days:
        flowables += [Spacer(1, 6), *_daily_charts(days)]
    flowables.append(_sub("2.1 By model", "section-2-1"))
    model_rows = [
        [_t(m.text("model"), 80), _t(m.text("provider"), 40), _n(m.integer("requests")),
         _n(m.integer("prompt_tokens")), _n(m.integer("completion_tokens")),
         _eur(m.money("cost_eur"))]
        for m in by_model
    ]  # fmt: skip
    header = ["Model", "Provider", "Requests", "Prompt tokens", "Completion tokens", "Cost"]
    widths = [0.3, 0.14, 0.12, 0.15, 0.16, 0.13]
    flowables += _table(header, model_rows, widths, numeric=(2, 3, 4, 5), what="models")
    flowables.append(_sub("2.2 By day", "section-2-2"))
    day_rows = [[_t(day, 12), _n(count), _eur(cost)] for day, count, cost in days]
    flowables += _table(["Day", "Requests", "Cost"], day_rows, [0.3, 0.2, 0.2], numeric=(1, 2))
    return flowables


def _daily_charts(days: Sequence[tuple[str, int, Decimal]]) -> list[Flowable]:
    labels = [_clean(day, 10)[-5:] for day, _, _ in days]
    costs = [float(cost) for _, _, cost in days]
    top = max(costs, default=0)
    # Enough decimals that the axis's ticks differ: two past the largest amount's first digit.
    places = 2 if top >= 0.1 or top <= 0 else min(8, 1 - math.floor(math.log10(top)) + 1)
    return [
        charts.daily_bars(labels, [count for _, count, _ in days],
                          title="Requests per day", width=_WIDTH,
                          value_format=lambda value: f"{value:,.0f}"),
        Spacer(1, 8),
        charts.daily_bars(labels, costs, title="Cost per day (EUR)", width=_WIDTH,
                          color=charts.TEAL, counts=False,
                          value_format=lambda value: f"\u20ac{value:,.{places}f}"),
        Spacer(1, 6),
    ]  # fmt: skip


_OUTCOMES = (
    ("blocked", "Blocked"),
    ("suppressed", "Suppressed"),
    ("loop_events", "Loop events"),
    ("budget_events", "Budget events"),
    ("quota_events", "Quota events"),
    ("high_risk", "High-risk"),
)


def _policy(root: _Node) -> list[Flowable]:
    policy = root.node("policy")
    weeks, by_policy = policy.nodes("weeks"), policy.nodes("by_policy")
    flowables = _section(3)
    if not weeks and not by_policy:
        return [*flowables, _para("No policy outcomes in this period.")]
    counts = {key: [week.integer(key) for week in weeks] for key, _ in _OUTCOMES}
    labels = [_clean(week.text("week"), 10) for week in weeks]
    if any(any(values) for values in counts.values()):
        series = [(label, counts[key]) for key, label in _OUTCOMES]
        flowables.append(
            charts.stacked_bars(labels, series, title="Policy outcomes per week", width=_WIDTH)
        )
        flowables.append(
            _para("Each band counts one kind of event; one request can count in more than one.",
                  "note")
        )  # fmt: skip
    else:
        flowables.append(
            _para(
                "No request was blocked or suppressed, and no loop, budget, quota or high-risk "
                "event was recorded."
            )
        )
    rows = [
        [_t(week.text("week"), 12), _t(week.text("start"), 12), _n(week.integer("requests")),
         *(_n(counts[key][i]) for key, _ in _OUTCOMES)]
        for i, week in enumerate(weeks)
    ]  # fmt: skip
    header = ["Week", "Starts", "Requests", *(label for _, label in _OUTCOMES)]
    widths = [0.11, 0.11, 0.11, 0.1, 0.14, 0.1, 0.11, 0.1, 0.12]
    flowables += _table(header, rows, widths, numeric=tuple(range(2, 9)), what="weeks")
    flowables.append(_sub("3.1 Requests blocked by policy", "section-3-1"))
    if not by_policy:
        return [*flowables, _para("No policy blocked a request in this period.")]
    policy_rows = [[_t(p.text("policy"), 120), _n(p.integer("blocked"))] for p in by_policy]
    flowables += _table(["Policy", "Blocked"], policy_rows, [0.5, 0.2], numeric=(1,),
                        what="policies")  # fmt: skip
    return flowables


def _verification(root: _Node) -> list[Flowable]:
    verification = root.node("verification")
    intro = (
        "Each chain was walked from its first retained entry to its head: every entry's hash "
        "recomputed, every link to the entry before it checked, and the chain compared with "
        "its newest signed checkpoint. VALID means no break was found. INVALID means an entry "
        "was altered, removed or reordered after it was written, or the chain disagrees with "
        "its checkpoint; the breaks below say where."
    )
    flowables = [*_section(4), _para(intro), Spacer(1, 4)]
    flowables += _chain(verification.node("audit"), "4.1 Audit trail", "section-4-1")
    flowables += _chain(verification.node("receipts"), "4.2 Receipt chain", "section-4-2")
    return flowables


def _chain(chain: _Node, title: str, key: str) -> list[Flowable]:
    valid, entries = chain.flag("valid"), chain.integer("entries")
    text = f"{_count(entries, 'entry', 'entries')} checked at {_when(chain.text('checked_at'))}."
    reason = chain.opt_text("reason")
    if reason:
        text += f" {_t(reason, 500)}"
    flowables: list[Flowable] = [_sub(title, key), _badge(valid, text), Spacer(1, 6)]
    checkpoint = chain.opt_node("checkpoint")
    if checkpoint is None:
        flowables.append(
            _para("No signed checkpoint was available; the chain was checked on its own hashes.")
        )
    else:
        flowables.append(_para("<b>Checked against the signed checkpoint</b>"))
        flowables += _pairs(
            [
                ("Sequence", _n(checkpoint.integer("sequence"))),
                ("Hash", _t(checkpoint.text("hash"), 128)),
                ("Signed at", _when(checkpoint.text("signed_at"))),
                ("Key id", _t(checkpoint.text("key_id"), 64)),
            ],
            0.2,
        )
    breaks = chain.nodes("breaks")
    if not breaks:
        return [*flowables, _para("No breaks were found.")]
    flowables.append(_para(f"<b>Breaks found: {_n(len(breaks))}</b>"))
    rows = [[_n(b.opt_integer("sequence")), _t(b.text("reason"), 500)] for b in breaks]
    return flowables + _table(["Sequence", "Reason"], rows, [0.16, 0.84], what="breaks")


_LEGEND = (
    "<b>How to read this section.</b> Each finding compares one outcome (for example an "
    "imaging referral) across the groups of one attribute (for example sex). A group's impact "
    "ratio is its favourable rate divided by that of the best-treated group; a ratio under "
    "0.8 (the four-fifths rule) is a disparity signal. A finding is <b>flagged</b> when its "
    "lowest impact ratio is under 0.8 and the difference between the groups is statistically "
    "significant after Benjamini\u2013Hochberg false-discovery-rate correction across the run "
    "(q below 0.05). It is <b>inconclusive</b> when the sample was smaller than needed to "
    "detect a four-fifths gap at 80% power, or no valid test could be run; otherwise it is "
    "<b>not flagged</b>. Rates are shown with 95% Wilson confidence intervals."
)
_CAVEAT = (
    "<b>A flag is a statistical signal for review, not proof of harm; \u201cnot flagged\u201d is "
    "not proof that a model is fair.</b>"
)
_STATUS = {
    "flagged": f'<font color="{_RED}"><b>FLAGGED</b></font>',
    "not_flagged": f'<font color="{_GREEN}"><b>not flagged</b></font>',
    "inconclusive": "<b>inconclusive</b>",
}
_TESTS = {
    "mcnemar": "McNemar",
    "cochrans_q": "Cochran's Q",
    "wilcoxon": "Wilcoxon signed-rank",
    "friedman": "Friedman",
    "chi_square": "Chi-square",
    "fisher_exact": "Fisher's exact",
}


def _status(status: str) -> str:
    return _STATUS.get(status) or f"<b>{_t(status, 40)}</b>"


def _bias(root: _Node) -> list[Flowable]:
    runs = root.node("bias").nodes("runs")
    flowables = [*_section(5), _para(_LEGEND), Spacer(1, 3), _para(_CAVEAT), Spacer(1, 6)]
    if not runs:
        return [*flowables, _para("No bias runs in this period.")]
    flowables += _ratio_charts(runs)
    left = _MAX_FINDINGS
    for number, run in enumerate(runs, 1):
        findings = run.nodes("findings")
        flowables += _run(run, number)
        if not findings:
            flowables.append(_para("This run produced no findings."))
        for finding in findings[: max(left, 0)]:
            flowables.append(KeepTogether(_finding(finding)))
        if len(findings) > left:
            flowables.append(_para(f"Further findings are in the attached {ATTACHMENT_NAME}.",
                                   "note"))  # fmt: skip
        left -= len(findings)
    return flowables


def _ratio_charts(runs: Sequence[_Node]) -> list[Flowable]:
    bars = []
    for run in runs:
        model = run.text("model")
        for finding in run.nodes("findings"):
            ratio = finding.number("min_impact_ratio")
            if ratio is not None:
                label = f"{finding.text('attribute')} / {finding.text('outcome')} ({model})"
                bars.append((_clean(label, 44), ratio, finding.text("status") == "flagged"))
    if not bars:
        return [_para("No finding has an impact ratio to chart.")]
    flowables: list[Flowable] = []
    for first in range(0, len(bars), _CHART_ROWS):
        chunk = bars[first : first + _CHART_ROWS]
        title = "Lowest impact ratio per finding (red: flagged)"
        flowables.append(
            charts.impact_ratios([b[0] for b in chunk], [b[1] for b in chunk],
                                 [b[2] for b in chunk], title=title, width=_WIDTH)
        )  # fmt: skip
        flowables.append(Spacer(1, 8))
    return flowables


def _run(run: _Node, number: int) -> list[Flowable]:
    kind = run.text("kind")
    method = {"probe": "Counterfactual probes", "passive": "Passive monitoring"}.get(kind)
    title = f"5.{number} {method or _clean(kind, 30)}: {_clean(run.text('model'), 80)}"
    facts = [
        ("Probe set", _t(run.opt_text("probe_set"), 120)),
        ("Status", _t(run.text("status"), 40)),
        ("Finished at", _when(run.opt_text("finished_at"))),
        ("Calls", _n(run.integer("calls"))),
        ("Cost", _eur(run.money("cost_eur"))),
        ("Run id", _t(run.text("id"), 64)),
    ]
    return [_sub(title, f"section-5-{number}"), *_pairs(facts, 0.2)]


def _finding(finding: _Node) -> list[Flowable]:
    attribute, outcome = _t(finding.text("attribute"), 60), _t(finding.text("outcome"), 60)
    test = finding.opt_text("test")
    test_name = "no valid test" if test is None else _TESTS.get(test) or _t(test, 40)
    required = finding.opt_integer("n_required")
    details = (
        f"{test_name} ({_t(finding.text('design'), 20)}, {_t(finding.text('kind'), 20)}): "
        f"statistic {_fixed(finding.number('statistic'))}, "
        f"p = {_pvalue(finding.number('p_value'))}, q = {_pvalue(finding.number('q_value'))}; "
        f"n = {_n(finding.integer('n'))} ({_n(finding.integer('n_excluded'))} excluded, "
        f"{'n/a' if required is None else _n(required)} needed). "
        f"Best-treated: {_t(finding.opt_text('best_group'), 60)}; "
        f"worst-treated: {_t(finding.opt_text('worst_group'), 60)}; "
        f"lowest impact ratio <b>{_fixed(finding.number('min_impact_ratio'))}</b>."
    )
    flowables: list[Flowable] = [
        _para(f"{attribute} / {outcome}: {_status(finding.text('status'))}", "h3"),
        _para(details, "cell"),
        Spacer(1, 2),
    ]
    reason = finding.opt_text("reason")
    if reason:
        flowables.append(_para(_t(reason, 600), "note"))
    return flowables + _groups(finding.nodes("groups"))


def _groups(groups: Sequence[_Node]) -> list[Flowable]:
    rows = []
    for group in groups:
        low, high = group.number("ci_low"), group.number("ci_high")
        ratio = group.number("impact_ratio")
        shown = _fixed(ratio)
        if ratio is not None and ratio < charts.FOUR_FIFTHS:
            shown = f'<font color="{_RED}"><b>{shown}</b></font>'
        rows.append(
            [_t(group.text("group"), 60), _n(group.integer("n")),
             _n(group.opt_integer("successes")), _pct(group.number("rate")),
             "n/a" if low is None or high is None else f"{_pct(low)} \u2013 {_pct(high)}",
             _fixed(group.number("mean")), _pct(group.number("favourable_rate")), shown]
        )  # fmt: skip
    header = ["Group", "n", "Successes", "Rate", "95% CI (Wilson)", "Mean", "Favourable",
              "Impact ratio"]  # fmt: skip
    widths = [0.16, 0.07, 0.125, 0.085, 0.18, 0.09, 0.135, 0.135]
    return _table(header, rows, widths, numeric=(1, 2, 3, 4, 5, 6, 7), what="groups")


def _changes(root: _Node) -> list[Flowable]:
    changes = root.nodes("changes")
    flowables = _section(6)
    if not changes:
        return [*flowables, _para("No changes to keys, members or settings in this period.")]
    rows = [
        [_when(c.text("at")), _t(c.text("actor"), 120), _t(c.text("action"), 60),
         _t(c.text("target"), 80), _t(c.text("summary"), 300)]
        for c in changes
    ]  # fmt: skip
    header = ["At", "Actor", "Action", "Target", "Summary"]
    widths = [0.13, 0.22, 0.19, 0.21, 0.25]
    return flowables + _table(header, rows, widths, ids=(3,), what="changes")


def _days(days: int | None) -> str:
    if days is None:
        return "not set"
    years = f" (about {days / 365.25:.0f} years)" if days >= 365 else ""
    return f"{_n(days)} days{years}"


def _retention(root: _Node) -> list[Flowable]:
    retention = root.node("retention")
    content = (
        f"logged, kept {_days(retention.opt_integer('content_days'))}"
        if retention.flag("content_logging")
        else "not logged"
    )
    facts = [
        ("Traces (request metadata)", _days(retention.opt_integer("trace_days"))),
        ("Prompt and completion content", content),
        ("Audit trail", _days(retention.opt_integer("audit_days"))),
        ("Receipts", _days(retention.opt_integer("receipt_days"))),
    ]
    intro = "How long Aqta keeps this organisation's data, as configured when the report was made."
    return [*_section(7), _para(intro), Spacer(1, 4), *_pairs(facts)]


def _high_risk(root: _Node) -> list[Flowable]:
    high_risk = root.node("high_risk")
    by_rule, recent = high_risk.nodes("by_rule"), high_risk.nodes("recent")
    decisions = high_risk.integer("decisions")
    flowables = _section(8)
    if decisions == 0 and not by_rule and not recent:
        return [*flowables, _para("No high-risk decisions in this period.")]
    flowables.append(
        _para(
            f"{_count(decisions, 'high-risk decision')}: "
            f"{_n(high_risk.integer('blocked'))} blocked, "
            f"{_n(high_risk.integer('flagged'))} flagged for review."
        )
    )
    flowables.append(_sub("8.1 By rule", "section-8-1"))
    rule_rows = [
        [_t(r.text("rule"), 120), _t(r.text("action"), 30), _n(r.integer("count"))] for r in by_rule
    ]
    flowables += _table(["Rule", "Action", "Decisions"], rule_rows, [0.45, 0.2, 0.15],
                        numeric=(2,), what="rules")  # fmt: skip
    flowables.append(_sub("8.2 Most recent decisions", "section-8-2"))
    recent_rows = [
        [_when(r.text("at")), _t(r.text("trace_id"), 64),
         _t(", ".join(r.texts("rules")), 300), _t(r.text("decision"), 30)]
        for r in recent
    ]  # fmt: skip
    widths = [0.16, 0.36, 0.3, 0.18]
    return flowables + _table(["At", "Trace", "Rules", "Decision"], recent_rows, widths,
                              ids=(1,), what="decisions")  # fmt: skip


def _integrity(root: _Node, *, content_sha256: str, signature: str, key_id: str) -> list[Flowable]:
    values = [
        ("Report id", _t(root.text("id"), 120)),
        ("Content SHA-256", content_sha256),
        ("Signature (Ed25519, base64url)", escape(signature)),
        ("Key id", _t(key_id, 128)),
    ]
    flowables = [
        *_section(9),
        _para(
            f"The content of this report, attached to this file as {ATTACHMENT_NAME}, is "
            "hashed with SHA-256 and the hash signed with Ed25519."
        ),
        Spacer(1, 6),
    ]
    flowables.append(_values_box(values))
    verify = (
        "To verify this report, run <b>python manage.py report_verify &lt;file&gt;</b> on this "
        "PDF: it recomputes the SHA-256 of the attached report and checks the Ed25519 "
        "signature. The public key is published at <b>GET /v1/attestation/public-key</b>, "
        "and the key id there must match the key id above."
    )
    return [*flowables, Spacer(1, 4), _para(verify)]


def _values_box(values: Sequence[tuple[str, str]]) -> Table:
    """Labels over their values in one box: a signature needs the whole width."""
    rows = []
    for label, value in values:
        rows += [[_para(f"<b>{label}</b>", "cell")], [_para(value, "code")]]
    table = Table(rows, colWidths=[_WIDTH], hAlign="LEFT")
    table.setStyle(
        TableStyle(
            [
                ("BOX", (0, 0), (-1, -1), 0.8, _RULE),
                ("BACKGROUND", (0, 0), (-1, -1), _ZEBRA),
                ("TOPPADDING", (0, 0), (-1, -1), 1),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 1),
                *(("BOTTOMPADDING", (0, i), (-1, i), 8) for i in range(1, len(rows), 2)),
                *(("TOPPADDING", (0, i), (-1, i), 6) for i in range(0, len(rows), 2)),
            ]
        )
    )
    return table


def _story(root: _Node, *, content_sha256: str, signature: str, key_id: str) -> list[Flowable]:
    sections: list[Callable[[_Node], list[Flowable]]] = [
        _summary, _usage, _policy, _verification, _bias, _changes, _retention, _high_risk,
    ]  # fmt: skip
    story = [*_title_page(root), *_contents(), PageBreak()]
    for section in sections:
        story += section(root)
    return story + _integrity(
        root, content_sha256=content_sha256, signature=signature, key_id=key_id
    )


# --- the document ----------------------------------------------------------------------


class _PageTotal(Flowable):
    """An invisible last flowable that counts the pages. Each pass of ``multiBuild`` draws
    "Page N of M" with the count of the pass before; the build ends once they agree."""

    def __init__(self) -> None:
        super().__init__()
        self.shown = 0  # the total the footers of this pass print
        self.counted = 0  # the pages this pass laid out

    def isIndexing(self) -> int:
        return 1

    def isSatisfied(self) -> bool:
        return self.shown == self.counted

    def beforeBuild(self) -> None:
        self.shown = self.counted

    def afterBuild(self) -> None:
        pass

    def notify(self, kind: str, stuff: object) -> None:
        pass  # the contents' entries are not for it

    def wrap(self, avail_width: float, avail_height: float) -> tuple[float, float]:
        return 0, 0

    def draw(self) -> None:
        self.counted = self.canv.getPageNumber()


class _ReportDocument(BaseDocTemplate):
    """A4, a title page without header, body pages with a running header, a footer with
    "Page N of M" on all; headings go into the PDF outline and (level 0) the contents."""

    def __init__(self, buffer: io.BytesIO, *, header: str, footer: str, **kwargs: Any) -> None:
        super().__init__(
            buffer,
            pagesize=A4,
            leftMargin=_MARGIN,
            rightMargin=_MARGIN,
            topMargin=22 * mm,
            bottomMargin=20 * mm,
            invariant=1,  # the same report renders to the same bytes
            **kwargs,
        )
        self._header, self._footer = header, footer
        self.page_total = _PageTotal()
        frame = Frame(self.leftMargin, self.bottomMargin, self.width, self.height, id="text")
        self.addPageTemplates(
            [
                PageTemplate("title", [frame], onPage=self._draw_footer),
                PageTemplate("body", [frame], onPage=self._draw_header_and_footer),
            ]
        )

    def _draw_footer(self, canvas: Canvas, doc: BaseDocTemplate) -> None:
        canvas.saveState()
        canvas.setFont(FONT, 8)
        canvas.setFillColor(charts.MUTED)
        canvas.setStrokeColor(_RULE)
        canvas.line(_MARGIN, 14 * mm, A4[0] - _MARGIN, 14 * mm)
        canvas.drawString(_MARGIN, 10 * mm, self._footer)
        total = self.page_total.shown or "?"
        canvas.drawRightString(A4[0] - _MARGIN, 10 * mm, f"Page {doc.page} of {total}")
        canvas.restoreState()

    def _draw_header_and_footer(self, canvas: Canvas, doc: BaseDocTemplate) -> None:
        self._draw_footer(canvas, doc)
        canvas.saveState()
        canvas.setFont(FONT, 8)
        canvas.setFillColor(charts.MUTED)
        canvas.drawString(_MARGIN, A4[1] - 13 * mm, self._header)
        canvas.setStrokeColor(_RULE)
        canvas.line(_MARGIN, A4[1] - 15 * mm, A4[0] - _MARGIN, A4[1] - 15 * mm)
        canvas.restoreState()

    def afterFlowable(self, flowable: Flowable) -> None:
        entry = getattr(flowable, "outline_entry", None)
        if entry is None:
            return
        level, text, key = entry
        self.canv.bookmarkPage(key)
        self.canv.addOutlineEntry(text, key, level=level, closed=level > 0)
        if level == 0:
            self.notify("TOCEntry", (0, escape(text), self.page, key))


class _Contents(TableOfContents):
    """The contents as a table of linked titles and page numbers (no dot leaders, so the
    text reads "1 Summary 3" when extracted)."""

    def wrap(self, avail_width: float, avail_height: float) -> tuple[float, float]:
        entries = self._lastEntries or [(0, "Contents", 0, None)]  # the first pass
        rows = [
            [_para(f'<a href="#{key}">{text}</a>' if key else text, "toc"),
             _para(str(page), "toc_page")]
            for _, text, page, key in entries
        ]  # fmt: skip
        self._table = Table(rows, colWidths=[avail_width - 50, 50], hAlign="LEFT")
        self._table.setStyle(
            TableStyle([("LINEBELOW", (0, 0), (-1, -1), 0.4, _RULE, None, (1, 2))])
        )
        self.width, self.height = self._table.wrapOn(self.canv, avail_width, avail_height)
        return self.width, self.height


def _contents() -> list[Flowable]:
    return [_para("Contents", "title"), Spacer(1, 6), _Contents()]


# --- the public functions --------------------------------------------------------------


def _check_integrity_args(
    content_sha256: object, signature: object, key_id: object, attachment: object
) -> None:
    if not isinstance(content_sha256, str) or not _HEX64.fullmatch(content_sha256):
        raise ReportPdfError("content_sha256: expected 64 lowercase hex digits")
    if not isinstance(signature, str) or not _BASE64URL.fullmatch(signature):
        raise ReportPdfError("signature: expected base64url text")
    if not isinstance(key_id, str) or not key_id.strip():
        raise ReportPdfError("key_id: expected a non-empty string")
    if not isinstance(attachment, bytes | bytearray):
        raise ReportPdfError(f"attachment: expected bytes, got {_kind(attachment)}")


def report_pdf(
    report: Mapping[str, Any],
    *,
    content_sha256: str,
    signature: str,
    key_id: str,
    attachment: bytes,
) -> bytes:
    """The report as PDF bytes, with ``attachment`` (the signed JSON) embedded as
    ``report.json``. Raises :class:`ReportPdfError` for a report dict that lacks a key or
    holds a value of the wrong type, or for arguments that are not a hash, a signature,
    a key id and bytes."""
    _check_integrity_args(content_sha256, signature, key_id, attachment)
    root = _Node(report, "")
    story = _story(root, content_sha256=content_sha256, signature=signature, key_id=key_id)
    metadata = _metadata(root, content_sha256)
    organization = _clean(root.node("organization").text("name"), 100)
    period = _period(root)
    header = f"Compliance report \u00b7 {charts.fit(organization, _WIDTH * 0.6, size=8)} \u00b7 "
    header += f"{period[0]} to {period[1]}"
    footer = charts.fit(f"Aqta \u00b7 report {_clean(root.text('id'), 100)}", _WIDTH * 0.7, size=8)
    buffer = io.BytesIO()
    document = _ReportDocument(
        buffer, header=header, footer=footer, title=metadata["/Title"], author="Aqta"
    )
    document.multiBuild([*story, document.page_total])
    return _with_attachment(buffer.getvalue(), bytes(attachment), metadata)


def _period(root: _Node) -> tuple[date, date]:
    period = root.node("period")
    start, end = _parse_day(period, "start"), _parse_day(period, "end")
    if end < start:
        raise ReportPdfError("period: ends before it starts")
    return start, end


def _metadata(root: _Node, content_sha256: str) -> dict[str, str]:
    """The document information: the standard entries, the creation date the report's
    ``generated_at``, and the report's id and content hash under Aqta's own keys."""
    start, end = _period(root)
    organization = _clean(root.node("organization").text("name"), 120, drawable=False)
    generated = root.text("generated_at")
    try:
        moment = datetime.fromisoformat(generated)
    except ValueError as error:
        raise ReportPdfError("generated_at: not an ISO timestamp") from error
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # the report's times are UTC
    created = moment.astimezone(UTC).strftime("D:%Y%m%d%H%M%S+00'00'")
    return {
        "/Title": f"Compliance report: {organization} ({start} to {end})",
        "/Author": "Aqta",
        "/Subject": f"Signed compliance report of {start} to {end}; the signed data is "
        f"attached as {ATTACHMENT_NAME}",
        "/Creator": _clean(root.text("generator"), 80, drawable=False),
        "/CreationDate": created,
        "/ModDate": created,
        "/AqtaReportId": _clean(root.text("id"), 200, drawable=False),
        "/AqtaContentSha256": content_sha256,
    }


def _with_attachment(pdf: bytes, attachment: bytes, metadata: dict[str, str]) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf)))
    writer.add_attachment(ATTACHMENT_NAME, attachment)
    writer.add_metadata(metadata)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _reader(pdf: object) -> PdfReader | None:
    if not isinstance(pdf, bytes | bytearray | memoryview):
        return None
    try:
        return PdfReader(io.BytesIO(bytes(pdf)))
    except Exception:  # pypdf raises many kinds on damaged input; all mean "not readable"
        return None


def report_attachment(pdf: bytes) -> bytes | None:
    """The ``report.json`` embedded in the PDF, byte for byte; None when ``pdf`` is not a
    readable PDF or has no such attachment. Never raises."""
    reader = _reader(pdf)
    if reader is None:
        return None
    try:
        found = reader.attachments.get(ATTACHMENT_NAME)
        return bytes(found[0]) if found else None
    except Exception:  # a damaged name tree reads as "no attachment"
        return None


def report_pdf_metadata(pdf: bytes) -> dict[str, str]:
    """The report's custom metadata, ``{"AqtaReportId": ..., "AqtaContentSha256": ...}``
    (the keys without their leading ``/``); ``{}`` when unreadable. Never raises."""
    reader = _reader(pdf)
    if reader is None:
        return {}
    try:
        info: Mapping[str, object] = reader.metadata or {}
        return {
            str(key)[1:]: str(value)
            for key, value in info.items()
            if str(key).startswith("/Aqta") and isinstance(value, str)
        }
    except Exception:  # a damaged info dictionary reads as "no metadata"
        return {}
