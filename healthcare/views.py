"""The dashboard's Receipts pages: the list with filters and export links, one receipt with
its signed JSON, its chain fields and a Verify button, and the issuer's public keys.

Healthcare tier only (``healthcare.access.receipts_require``): any other tier sees the
"Not allowed" page naming it. The conventions are those of ``accounts.views``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import rfc8785
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from accounts.authentication import request_user
from accounts.selectors import api_key_list
from accounts.views import Current, _render, page
from billing.selectors import models_for_tier
from healthcare import keyring
from healthcare.access import receipts_require
from healthcare.chain import ReceiptCheck, chain_link
from healthcare.export import number_text
from healthcare.forms import ReceiptFilterForm
from healthcare.models import Receipt
from healthcare.selectors import document_object, receipt_get, receipt_list, receipt_trace
from healthcare.serializers import EXPORT_FORMATS
from healthcare.services import Actor, receipt_verify_record

RECEIPTS_PER_PAGE = 25
EXPORT_LABELS = {"jsonl": "JSON Lines", "csv": "CSV", "fhir": "FHIR R4 Bundle"}


def _export_links(query: dict[str, str]) -> list[tuple[str, str]]:
    url = reverse("healthcare:receipts-export")
    return [
        (EXPORT_LABELS[name], f"{url}?{urlencode({'format': name, **query})}")
        for name in EXPORT_FORMATS
    ]


def issuer_keys() -> list[dict[str, Any]]:
    """``healthcare.keyring.published()``'s keys, with their windows as datetimes."""
    keys: list[dict[str, Any]] = keyring.published()["keys"]  # type: ignore[assignment]
    return [
        {
            **key,
            "valid_from": datetime.fromisoformat(key["valid_from"]),
            "valid_until": datetime.fromisoformat(key["valid_until"])
            if key["valid_until"]
            else None,
        }
        for key in keys
    ]


@page("receipts")
def receipts(request: HttpRequest, current: Current) -> HttpResponse:
    organization = current.organization
    receipts_require(organization)
    chain_link(organization.pk)
    api_keys = list(api_key_list(organization=organization))
    form = ReceiptFilterForm(
        request.GET or None,
        api_keys=api_keys,
        models=[m.model_id for m in models_for_tier(tier=organization.tier)],
    )
    filters = form.filters() if form.is_bound else {}
    rows = receipt_list(organization=organization, filters=filters)
    page_obj = Paginator(rows, RECEIPTS_PER_PAGE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    key_names = {k.pk: k.name for k in api_keys}
    context = {
        "form": form,
        "page_obj": page_obj,
        "filtered": bool(filters),
        "query": query.urlencode(),
        "rows": [(r, key_names.get(r.api_key_id) if r.api_key_id else None) for r in page_obj],
        "exports": _export_links(form.query()),
        "issuer_keys": issuer_keys(),
    }
    return _render(request, current, "dashboard/receipts.html", context)


def document_pretty(text: str) -> str | None:
    """The signed receipt one field a line, each value as RFC 8785 writes it (so the cost
    reads as signed: 0.000015), in the signed order; None if it is not a JSON object."""
    document, _ = document_object(text)
    if document is None:
        return None
    try:
        lines = [
            f"  {rfc8785.dumps(name).decode()}: {rfc8785.dumps(value).decode()}"
            for name, value in document.items()
        ]
    except (ValueError, TypeError, RecursionError):
        return None
    return "{\n" + ",\n".join(lines) + "\n}"


def _detail(
    request: HttpRequest, current: Current, receipt: Receipt, verification: ReceiptCheck | None
) -> HttpResponse:
    document, error = document_object(receipt.document)
    fields = document or {}
    policies = fields.get("policy_applied")
    context: dict[str, Any] = {
        "receipt": receipt,
        "document_error": error,
        "pretty": document_pretty(receipt.document),
        "policies": policies if isinstance(policies, list) else [],
        "cost": number_text(fields.get("cost_prevented_eur")),
        "trace": receipt_trace(receipt=receipt),
        "api_key": (
            api_key_list(organization=current.organization).filter(pk=receipt.api_key_id).first()
            if receipt.api_key_id
            else None
        ),
        "verification": verification,
        "issuer_keys": issuer_keys(),
    }
    return _render(request, current, "dashboard/receipt_detail.html", context)


def _receipt(current: Current, reference: str) -> Receipt:
    organization = current.organization
    receipts_require(organization)
    receipt = receipt_get(organization=organization, reference=reference)
    if receipt.sequence is None:
        chain_link(organization.pk)
        receipt.refresh_from_db()
    return receipt


@page("receipts")
@require_http_methods(["GET", "POST"])
def receipt_detail(request: HttpRequest, current: Current, reference: str) -> HttpResponse:
    """GET shows the receipt; POST (the Verify button) checks it, records that in the
    audit log and shows the verdict."""
    receipt = _receipt(current, reference)
    if request.method == "GET":
        return _detail(request, current, receipt, None)
    user = request_user(request)
    result = receipt_verify_record(receipt=receipt, actor=Actor(user, user.email, request))
    return _detail(request, current, receipt, result)


@page("receipts")
def receipt_download(request: HttpRequest, current: Current, reference: str) -> HttpResponse:
    """The stored receipt exactly as signed, as a file for ``aqta-verify-receipt``."""
    receipt = _receipt(current, reference)
    response = HttpResponse(receipt.document.encode("utf-8", "replace"), "application/json")
    name = f"receipt-{receipt.attestation_id}.json"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
