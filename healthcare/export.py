"""Receipt exports, streamed in constant memory: JSON Lines, CSV, or a FHIR R4 Bundle.

Rows are read in chain order a page at a time (keyset on ``sequence``, up to the chain's
length when the export began, so receipts linked meanwhile do not shift it) and written
as they come. Under ASGI the pages are fetched through an async iterator, one
``sync_to_async`` hop per page: Django would otherwise collect a synchronous iterator in
full before sending a byte.

- ``jsonl``: each stored receipt exactly as signed, one per line: what
  ``aqta-verify-receipt`` takes.
- ``csv``: one row per receipt with its chain fields and the signed receipt itself.
- ``fhir``: a ``Bundle`` (type ``collection``) of ``AuditEvent`` resources (docs/receipts.md
  §9 maps the fields).
"""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

import orjson
import rfc8785
from asgiref.sync import sync_to_async
from django.db.models import QuerySet
from django.utils import timezone

from accounts.models import Organization
from gateway.analytics.renderers import _cell as csv_cell
from healthcare.chain import chain_link
from healthcare.models import Receipt, ReceiptChain
from healthcare.selectors import receipt_list

PAGE = 500  # rows a chunk: its output is a few MB at most (a FHIR entry is ~2.4 kB)
COLUMNS = (
    "id",
    "sequence",
    "issued_at",
    "attestation_id",
    "trace_id",
    "outcome",
    "model",
    "api_key",
    "high_risk",
    "key_id",
    "policy_applied",
    "cost_prevented_eur",
    "prev_hash",
    "chain_hash",
    "receipt",
)
_FIELDS = (
    "id",
    "sequence",
    "issued_at",
    "attestation_id",
    "trace_id",
    "outcome",
    "model",
    "api_key_id",
    "high_risk",
    "key_id",
    "prev_hash",
    "chain_hash",
    "document",
    "organization_id",
)
Row = tuple[Any, ...]
_INDEX = {name: n for n, name in enumerate(_FIELDS)}


def export_pages(*, organization: Organization, filters: dict[str, Any]) -> Iterator[list[Row]]:
    """The organisation's receipts matching ``filters``, in chain order, a page at a time."""
    chain_link(organization.pk)
    head = ReceiptChain.objects.filter(organization=organization).first()
    through = head.length if head is not None else 0
    receipts: QuerySet[Receipt] = receipt_list(organization=organization, filters=filters)
    receipts = receipts.filter(sequence__isnull=False, sequence__lte=through).order_by("sequence")
    after = 0
    while True:
        page = list(receipts.filter(sequence__gt=after).values_list(*_FIELDS)[:PAGE])
        if page:
            yield page
        if len(page) < PAGE:
            return
        after = page[-1][_INDEX["sequence"]]


def _line(document: str) -> str:
    # A stored document never has a raw line break (RFC 8785 escapes them in strings); a
    # tampered one might: it must not split into two lines of the export.
    return document.replace("\r", " ").replace("\n", " ")


def jsonl_chunks(pages: Iterable[list[Row]]) -> Iterator[bytes]:
    at = _INDEX["document"]
    for page in pages:
        yield "".join(_line(row[at]) + "\n" for row in page).encode("utf-8", "replace")


def _document(text: str) -> dict[str, Any]:
    """The stored document's fields, or none when it is not a JSON object (orjson: the
    C parser, as the CSV export reads every row)."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:  # also what nests too deeply
        return {}
    return value if isinstance(value, dict) else {}


def number_text(value: object) -> str:
    """ECMAScript's text of a number, as signed: 0.000015, never 1.5e-05."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return ""
    try:
        return rfc8785.dumps(value).decode()
    except ValueError:  # beyond what a double holds
        return ""


def _signed_fields(document: str) -> tuple[str, str]:
    """``policy_applied`` and ``cost_prevented_eur`` as the receipt wrote them, for CSV."""
    value = _document(document)
    policies = value.get("policy_applied")
    listed = [p for p in policies if isinstance(p, str)] if isinstance(policies, list) else []
    return "; ".join(listed), number_text(value.get("cost_prevented_eur"))


def _csv_row(row: Row) -> list[Any]:
    fields = dict(zip(_FIELDS, row, strict=True))
    policies, cost = _signed_fields(fields["document"])
    values = {
        **fields,
        "issued_at": fields["issued_at"].isoformat(),
        "api_key": fields["api_key_id"],
        "policy_applied": policies,
        "cost_prevented_eur": cost,
        "receipt": fields["document"],
    }
    return [csv_cell(values[name]) for name in COLUMNS]


def csv_chunks(pages: Iterable[list[Row]]) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for page in pages:
        writer.writerows(_csv_row(row) for row in page)
        yield buffer.getvalue().encode("utf-8", "replace")
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():  # no receipts: the header alone
        yield buffer.getvalue().encode("utf-8")


# --- FHIR R4 ---------------------------------------------------------------------------------

SYSTEM = "https://aqta.ai/fhir"
# ALLOWED: the call went ahead (0, success). BLOCKED and SUPPRESSED: the gateway refused it,
# as an HTTP 4xx would (4, minor failure); the subtype says which.
FHIR_OUTCOMES = {"ALLOWED": "0", "BLOCKED": "4", "SUPPRESSED": "4"}
_DESCRIPTIONS = {
    "ALLOWED": "Allowed by the gateway's policies",
    "BLOCKED": "Blocked by the gateway's policies",
    "SUPPRESSED": "Answer suppressed by the gateway's policies",
}


def _identifier(kind: str, value: object) -> dict[str, str]:
    return {"system": f"{SYSTEM}/NamingSystem/{kind}", "value": str(value)}


def _agents(fields: dict[str, Any]) -> list[dict[str, Any]]:
    organization = {
        "type": {"text": "Organisation"},
        "who": {"identifier": _identifier("organization", fields["organization_id"])},
        "requestor": fields["api_key_id"] is None,
    }
    if fields["api_key_id"] is None:
        return [organization]
    key = {
        "type": {"text": "API key"},
        "who": {"identifier": _identifier("api-key", fields["api_key_id"])},
        "requestor": True,
    }
    return [key, organization]


def _entity(fields: dict[str, Any]) -> dict[str, Any]:
    signed = base64.b64encode(fields["document"].encode("utf-8", "replace")).decode("ascii")
    return {
        "what": {"identifier": _identifier("trace", fields["trace_id"])},
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
            "code": "2",
            "display": "System Object",
        },
        "name": fields["trace_id"],
        "description": f"Call to {fields['model']}",
        "detail": [
            {"type": "ATTESTATION-v1", "valueBase64Binary": signed},
            {"type": "chain.sequence", "valueString": str(fields["sequence"])},
            {"type": "chain.prev_hash", "valueString": fields["prev_hash"] or "-"},
            {"type": "chain.chain_hash", "valueString": fields["chain_hash"] or "-"},
        ],
    }


def audit_event(row: Row) -> dict[str, Any]:
    """One receipt as a FHIR R4 ``AuditEvent``."""
    fields = dict(zip(_FIELDS, row, strict=True))
    outcome = fields["outcome"]
    return {
        "resourceType": "AuditEvent",
        "id": str(fields["attestation_id"]),
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
            "display": "RESTful Operation",
        },
        "subtype": [
            {
                "system": f"{SYSTEM}/CodeSystem/gateway-decision",
                "code": outcome,
                "display": outcome.capitalize(),
            }
        ],
        "action": "E",
        "recorded": fields["issued_at"].isoformat(),
        "outcome": FHIR_OUTCOMES.get(outcome, "8"),
        "outcomeDesc": _DESCRIPTIONS.get(outcome, f"Recorded outcome {outcome!r}"),
        "agent": _agents(fields),
        "source": {
            "site": "Aqta gateway",
            "observer": {
                "display": "Aqta gateway",
                "identifier": _identifier("receipt-issuer-key", fields["key_id"]),
            },
            "type": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                    "code": "4",
                    "display": "Application Server",
                }
            ],
        },
        "entity": [_entity(fields)],
    }


def _bundle_open(now: datetime) -> str:
    return json.dumps(
        {"resourceType": "Bundle", "type": "collection", "timestamp": now.isoformat()},
        separators=(",", ":"),
    )[:-1]  # without its closing brace: the entries follow


def fhir_chunks(pages: Iterable[list[Row]]) -> Iterator[bytes]:
    """A Bundle, entry by entry; ``entry`` only when there is one (FHIR has no empty
    arrays)."""
    opening, separator = _bundle_open(timezone.now()) + ',"entry":[', ""
    for page in pages:
        parts = []
        for row in page:
            event = audit_event(row)
            entry = {"fullUrl": f"urn:uuid:{event['id']}", "resource": event}
            parts.append(separator + orjson.dumps(entry).decode())
            separator = ","
        yield (opening + "".join(parts)).encode("utf-8", "replace")
        opening = ""
    if opening:  # no receipts at all
        yield (_bundle_open(timezone.now()) + "}").encode()
    else:
        yield b"]}"


WRITERS: dict[str, tuple[Callable[[Iterable[list[Row]]], Iterator[bytes]], str, str]] = {
    "jsonl": (jsonl_chunks, "application/x-ndjson; charset=utf-8", "jsonl"),
    "csv": (csv_chunks, "text/csv; charset=utf-8", "csv"),
    "fhir": (fhir_chunks, "application/fhir+json; charset=utf-8", "fhir.json"),
}


def _next_chunk(chunks: Iterator[bytes]) -> bytes | None:
    return next(chunks, None)


async def async_chunks(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """``chunks`` for an ASGI server: each one produced in Django's sync thread (where the
    database connection lives), sent before the next is read."""
    step = sync_to_async(_next_chunk, thread_sensitive=True)
    while (chunk := await step(chunks)) is not None:
        yield chunk
