"""Checking a downloaded report, PDF or JSON (``manage.py report_verify``; docs/reports.md).

A PDF is valid when its attached ``report.json`` is a valid signed document (signature by
a known issuer key over the RFC 8785 bytes of the content, the hash matching), and the
hash the PDF names in its metadata and prints on its last page is that document's.
"""

from __future__ import annotations

from typing import Any

import orjson
from pypdf import PdfReader
from pypdf.errors import PyPdfError

from compliance.reports.signing import ReportVerdict, report_verify

PDF_MAGIC = b"%PDF-"


def _last_page_text(pdf: bytes) -> str:
    import io

    try:
        reader = PdfReader(io.BytesIO(pdf))
        return reader.pages[-1].extract_text() or ""
    except (PyPdfError, ValueError, IndexError, KeyError, TypeError):
        return ""


def report_file_verify(data: bytes, pinned_keys: dict[str, str]) -> tuple[ReportVerdict, Any]:
    """(verdict, the signed document or None) of a downloaded report file."""
    if not data.startswith(PDF_MAGIC):
        try:
            document = orjson.loads(data)
        except orjson.JSONDecodeError:
            return ReportVerdict(False, "neither a PDF nor a JSON report"), None
        return report_verify(document, pinned_keys), document
    from compliance.reports.pdf import report_attachment, report_pdf_metadata

    attached = report_attachment(data)
    if attached is None:
        return ReportVerdict(False, "the PDF carries no report.json attachment"), None
    try:
        document = orjson.loads(attached)
    except orjson.JSONDecodeError:
        return ReportVerdict(False, "the attached report.json is not JSON"), None
    verdict = report_verify(document, pinned_keys)
    if not verdict.valid:
        return verdict, document
    sha = verdict.content_sha256 or ""
    if report_pdf_metadata(data).get("AqtaContentSha256") != sha:
        return ReportVerdict(False, "the PDF's metadata names another content hash"), document
    printed = "".join(_last_page_text(data).split())
    if sha not in printed:
        return ReportVerdict(False, "the last page does not print the signed hash"), document
    return verdict, document
