"""``GET /api/compliance/audit-trail``: the organisation's audit trail, its verification
and its export (Healthcare tier; docs/audit.md).

JSON pages are cursor-paginated, newest first; ``?verify=true`` adds the verification of
the organisation's chains (audit, and receipts if any) against their signed checkpoints;
``?format=csv|jsonl`` streams every matching event, oldest first, in constant memory, and
is recorded in the trail as an export.
"""

from __future__ import annotations

from typing import Any, cast

from django.http import HttpResponseBase
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

from accounts.api.base import OrganizationScopedApi, validated
from aqta.openapi import ORGANIZATION_PARAMETER, error_responses
from compliance import selectors
from compliance.export import MEDIA_TYPES, export_response
from compliance.records import audit_export_record, audit_verification_record
from compliance.serializers import (
    AuditEventOutput,
    AuditTrailOutput,
    AuditTrailQuery,
    SequenceCursorField,
)
from gateway import openapi as _openapi  # noqa: F401  (registers the auth schemes)
from healthcare.access import audit_trail_require

JSON = "application/json"
FILTERS = ("start", "end", "action", "actor", "target")

EXAMPLE = OpenApiExample(
    "A page",
    response_only=True,
    media_type=JSON,
    value={
        "object": "audit_trail",
        "data": [
            {
                "id": 812,
                "scope": "6f1c1a2e-9b7d-4c3a-8e2f-1a2b3c4d5e6f",
                "sequence": 57,
                "created_at": "2026-11-30T08:15:00.123456+00:00",
                "action": "api_key.revoked",
                "actor": "ada@example.com",
                "target": "0b6f3c1e-5d2a-4f7b-9c8e-1a2b3c4d5e6f",
                "ip": "192.0.2.7",
                "user_agent": "Mozilla/5.0",
                "data": {"name": "ci", "key": "sk-aqta-Ab…9xYz"},
                "prev_hash": "5d41402abc4b2a76b9719d911017c592" * 2,
                "hash": "7d793037a0760186574b0282f2f435e7" * 2,
            }
        ],
        "has_more": True,
        "next": "https://aqta.example.com/api/compliance/audit-trail?cursor=c2VxOjU3",
    },
)


class AuditTrailApi(OrganizationScopedApi):
    # Only JSON is rendered by DRF; the exports are streamed responses of their own.
    renderer_classes = [JSONRenderer]

    def perform_content_negotiation(
        self, request: Request, force: bool = False
    ) -> tuple[BaseRenderer, str]:
        # `format` is this endpoint's own parameter (validated with the others), not DRF's
        # renderer override.
        return JSONRenderer(), JSONRenderer.media_type

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        organization, _ = self.organization_context(request)
        audit_trail_require(organization)
        self.organization = organization

    @extend_schema(
        operation_id="compliance_audit_trail",
        tags=["compliance"],
        summary="The audit trail: events, verification, export",
        description=(
            "The organisation's audit events, newest first, cursor-paginated (`limit` ≤ "
            "500, follow `next`), filtered by `start`/`end` (when recorded), `action` (or "
            "a prefix: `auth.*`), `actor` and `target`. Each event carries what its hash "
            "covers, so anyone can recompute the chain. `verify=true` walks the "
            "organisation's chains (audit events, and receipts if any) from their base: "
            "links, hashes, the head, and the newest signed checkpoint; `verification` "
            "reports the first break of each (sequence, row id, reason). "
            "`format=csv` or `format=jsonl` streams every matching event, oldest first "
            "(not paginated), and is recorded in the trail as an export. Healthcare tier."
        ),
        parameters=[AuditTrailQuery, ORGANIZATION_PARAMETER],
        responses={
            (200, JSON): AuditTrailOutput,
            (200, "text/csv"): OpenApiResponse(
                OpenApiTypes.STR, description="Every matching event, CSV with a header row."
            ),
            (200, "application/x-ndjson"): OpenApiResponse(
                OpenApiTypes.STR, description="Every matching event, one JSON object a line."
            ),
            **error_responses(
                400,
                401,
                403,
                404,
                s403="`tier_feature_unavailable`: the audit trail is part of the Healthcare "
                "tier; `permission_denied`.",
            ),
        },
        examples=[EXAMPLE],
    )
    def get(self, request: Request) -> HttpResponseBase:
        raw = {k: v for k, v in request.query_params.dict().items() if v != ""}
        query = validated(AuditTrailQuery, raw)
        filters = cast(selectors.AuditFilters, {k: query[k] for k in FILTERS if k in query})
        if query["format"] in MEDIA_TYPES:
            return self._export(request, query, filters)
        events, has_more = selectors.audit_page(
            organization=self.organization,
            filters=filters,
            limit=query["limit"],
            before=query.get("cursor"),
        )
        scope = str(self.organization.pk)
        body: dict[str, Any] = {
            "object": "audit_trail",
            "data": [AuditEventOutput(selectors.event_values(e, scope)).data for e in events],
            "has_more": has_more,
            "next": self._next_url(request, events[-1].sequence) if has_more else None,
        }
        if query["verify"]:
            body["verification"] = self._verification(request)
        return Response(body)

    def _export(
        self, request: Request, query: dict[str, Any], filters: selectors.AuditFilters
    ) -> HttpResponseBase:
        params = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in filters.items()}
        audit_export_record(
            request,
            "audit.trail",
            {**params, "format": query["format"]},
            organization=self.organization,
        )
        return export_response(
            request._request, organization=self.organization, filters=filters, fmt=query["format"]
        )

    def _verification(self, request: Request) -> dict[str, Any]:
        reports = selectors.organization_chains_verify(organization=self.organization)
        for report in reports:
            first = report.first_break
            audit_verification_record(
                request,
                "audit_chain" if report.kind == "audit" else "receipt_chain",
                report.scope,
                valid=report.valid,
                reason=first.reason if first else "",
                organization=self.organization,
            )
        return selectors.verification_summary(reports)

    @staticmethod
    def _next_url(request: Request, sequence: int) -> str:
        url = request.build_absolute_uri()
        return replace_query_param(url, "cursor", SequenceCursorField.encode(sequence))
