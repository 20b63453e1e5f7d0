"""Reads of stored receipts, shared by the receipts API, its export and the dashboard.

Every read is scoped to one organisation: another organisation's receipt is not found.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet

from accounts.models import Organization
from aqta.errors import not_found
from gateway import trace_ids
from gateway.analytics.rollups import instant
from gateway.models import Trace
from healthcare.models import Receipt

# Filters of a receipt list: name → column.
RECEIPT_FILTERS = {
    "outcome": "outcome",
    "model": "model",
    "key": "api_key_id",
    "high_risk": "high_risk",
}
_MAX_ID = 2**63 - 1


def receipt_list(*, organization: Organization, filters: dict[str, Any]) -> QuerySet[Receipt]:
    """The organisation's receipts, newest first (ties broken by id, for keyset pages).

    ``filters``: ``start`` (inclusive) and ``end`` (exclusive) as dates or datetimes (a
    date as an end includes that day), ``outcome``, ``model``, ``key`` (an API key id)
    and ``high_risk``; None or "" means no filter.
    """
    receipts = Receipt.objects.filter(organization=organization)
    if filters.get("start"):
        receipts = receipts.filter(issued_at__gte=instant(filters["start"]))
    if filters.get("end"):
        receipts = receipts.filter(issued_at__lt=instant(filters["end"], end=True))
    for name, column in RECEIPT_FILTERS.items():
        value = filters.get(name)
        if value is not None and value != "":
            receipts = receipts.filter(**{column: value})
    return receipts.order_by("-issued_at", "-id")


def receipt_page_after(
    receipts: QuerySet[Receipt], *, issued_at: datetime, receipt_id: int
) -> QuerySet[Receipt]:
    """The receipts after (older than) the given one in ``receipt_list`` order."""
    return receipts.filter(
        Q(issued_at__lt=issued_at) | Q(issued_at=issued_at, id__lt=receipt_id),
        issued_at__lte=issued_at,
    )


def _reference(value: str) -> Q | None:
    """The lookup a receipt reference names: a numeric id or an attestation id."""
    text = value.strip()
    if text.isascii() and text.isdigit():
        number = int(text)
        return Q(pk=number) if 0 < number <= _MAX_ID else None
    if len(text) not in (32, 36):
        return None
    try:
        return Q(attestation_id=uuid.UUID(text))
    except ValueError:
        return None


def receipt_get(*, organization: Organization, reference: str) -> Receipt:
    """A receipt of ``organization`` by its id or its attestation id (a UUID); another
    organisation's, or anything else, is a 404."""
    lookup = _reference(reference)
    receipt = Receipt.objects.filter(lookup, organization=organization).first() if lookup else None
    if receipt is None:
        raise not_found("No such receipt.")
    return receipt


def receipt_by_attestation(*, organization: Organization, attestation_id: object) -> Receipt | None:
    """The organisation's stored receipt with this attestation id, if any."""
    if not isinstance(attestation_id, str) or len(attestation_id) != 36:
        return None
    try:
        parsed = uuid.UUID(attestation_id)
    except ValueError:
        return None
    return Receipt.objects.filter(organization=organization, attestation_id=parsed).first()


def receipt_trace(*, receipt: Receipt) -> Trace | None:
    """The trace a receipt attests, while it is kept (traces have a shorter retention)."""
    pk = trace_ids.parse(receipt.trace_id)
    if pk is None:
        return None
    return Trace.objects.filter(organization_id=receipt.organization_id, pk=pk).first()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def document_object(text: str) -> tuple[dict[str, Any] | None, str]:
    """A stored document parsed as strict JSON: (the object, "") or (None, why not)."""
    try:
        text.encode("utf-8")  # a lone surrogate (SQLite stores one) cannot be sent
        value = json.loads(text, parse_constant=_reject_constant)
    except UnicodeEncodeError:
        return None, "the stored document is not valid Unicode text"
    except (ValueError, TypeError):
        return None, "the stored document is not JSON"
    except RecursionError:
        return None, "the stored document is nested too deeply to read"
    if not isinstance(value, dict):
        return None, "the stored document is not a JSON object"
    return value, ""
