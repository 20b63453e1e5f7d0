"""Streaming an audit-trail export (CSV or JSON Lines) in constant memory.

Events are read a chunk at a time (``compliance.selectors.audit_export_events``) and
written as they come. Under ASGI (the production server) the response iterates an
asynchronous generator, each chunk's query running in Django's database thread; under WSGI
(and the test client) a plain generator. Either way Django never holds the whole export.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, StreamingHttpResponse

from accounts.models import Organization
from compliance.selectors import AuditFilters, audit_export_events, event_values

CSV_COLUMNS = (
    "scope",
    "sequence",
    "created_at",
    "action",
    "actor",
    "target",
    "ip",
    "user_agent",
    "data",
    "prev_hash",
    "hash",
    "id",
)
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}


def _cell(value: Any) -> Any:
    """A CSV cell; one starting like a formula would run as one in a spreadsheet."""
    if value is None:
        return ""
    if isinstance(value, dict | list):
        value = json.dumps(value, sort_keys=True, separators=(",", ":"))
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _csv_chunk(rows: list[dict[str, Any]], *, header: bool) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    if header:
        writer.writerow(CSV_COLUMNS)
    writer.writerows([_cell(row[name]) for name in CSV_COLUMNS] for row in rows)
    return buffer.getvalue().encode()


def _jsonl_chunk(rows: list[dict[str, Any]], *, header: bool) -> bytes:
    return b"".join(
        json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode() + b"\n" for row in rows
    )


WRITERS: dict[str, Callable[..., bytes]] = {"csv": _csv_chunk, "jsonl": _jsonl_chunk}


def export_chunks(
    *, organization: Organization, filters: AuditFilters, fmt: str
) -> Iterator[bytes]:
    """The export's bytes, one chunk of events at a time."""
    write, scope = WRITERS[fmt], str(organization.pk)
    header = True
    if fmt == "csv":
        yield write([], header=True)
        header = False
    for events in audit_export_events(organization=organization, filters=filters):
        yield write([event_values(event, scope) for event in events], header=header)


def _next(chunks: Iterator[bytes]) -> bytes | None:
    return next(chunks, None)


async def _async_chunks(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    step = sync_to_async(_next, thread_sensitive=True)  # the database's thread
    while (chunk := await step(chunks)) is not None:
        yield chunk


def export_response(
    request: HttpRequest, *, organization: Organization, filters: AuditFilters, fmt: str
) -> StreamingHttpResponse:
    chunks = export_chunks(organization=organization, filters=filters, fmt=fmt)
    content = _async_chunks(chunks) if isinstance(request, ASGIRequest) else chunks
    response = StreamingHttpResponse(content, content_type=MEDIA_TYPES[fmt])
    response["Content-Disposition"] = f'attachment; filename="aqta-audit-trail.{fmt}"'
    return response
