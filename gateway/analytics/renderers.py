"""CSV for the analytics API: a renderer for tables and the response that carries one."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from typing import Any

from rest_framework.renderers import BaseRenderer
from rest_framework.response import Response


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    # A cell starting like a formula would run as one in a spreadsheet.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


class CsvRenderer(BaseRenderer):
    """Renders ``{"header": [...], "rows": [[...], ...]}`` as CSV with a header row."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(data["header"])
        writer.writerows([_cell(value) for value in row] for row in data["rows"])
        return buffer.getvalue().encode()


def csv_response(
    rows: Sequence[Mapping[str, Any]], header: list[str], filename: str, **headers: str
) -> Response:
    table = {"header": header, "rows": [[row.get(name) for name in header] for row in rows]}
    disposition = f'attachment; filename="{filename}"'
    return Response(table, headers={"Content-Disposition": disposition, **headers})
