"""Receipts, their chain heads and the issuer's public keys in the operators' admin:
viewable, never added, changed or deleted (on PostgreSQL the triggers refuse it anyway).

Search takes a trace id in any spelling (``tr_…``, a UUID, the bare hex) or an
attestation id; filters by outcome, high-risk and organisation.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest

from aqta.admin import ReadOnlyAdmin
from gateway import trace_ids
from healthcare.models import Receipt, ReceiptChain, ReceiptKey


class RecordAdmin(ReadOnlyAdmin):
    """Signed records: no one edits or deletes them from the admin."""

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Receipt)
class ReceiptAdmin(RecordAdmin):
    list_display = [
        "issued_at",
        "organization",
        "outcome",
        "high_risk",
        "model",
        "trace_id",
        "sequence",
        "key_id",
    ]
    list_filter = ["outcome", "high_risk", ("organization", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["trace_id", "model", "organization__name"]
    list_select_related = ["organization"]
    date_hierarchy = "issued_at"
    fields = [
        "organization",
        "attestation_id",
        "trace_id",
        "api_key_id",
        "model",
        "outcome",
        "high_risk",
        "issued_at",
        "key_id",
        "sequence",
        "prev_hash",
        "chain_hash",
        "document",
    ]

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Receipt], search_term: str
    ) -> tuple[QuerySet[Receipt], bool]:
        # A UUID may be the attestation id or the trace's; tr_… and bare hex are traces.
        parsed = trace_ids.parse(search_term)
        if parsed is not None:
            term = search_term.strip()
            is_trace = term[:3].lower() == trace_ids.PREFIX
            by_trace = Q(trace_id=trace_ids.public(parsed))
            by_attestation = Q(attestation_id=_uuid(term)) if not is_trace else Q(pk__in=[])
            return queryset.filter(by_trace | by_attestation), False
        return super().get_search_results(request, queryset, search_term)


def _uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


@admin.register(ReceiptChain)
class ReceiptChainAdmin(RecordAdmin):
    list_display = ["organization", "length", "last_hash", "base_sequence", "updated_at"]
    search_fields = ["organization__name"]
    list_select_related = ["organization"]


@admin.register(ReceiptKey)
class ReceiptKeyAdmin(RecordAdmin):
    list_display = ["key_id", "algorithm", "activated_at", "retired_at", "public_key"]
    list_filter = [("retired_at", admin.EmptyFieldListFilter)]
    search_fields = ["key_id", "public_key"]
