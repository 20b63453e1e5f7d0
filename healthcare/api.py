"""/api/health/receipts: the organisation's signed receipts, their verification and export.

Healthcare tier (``healthcare.access.receipts_require``): any other tier gets 403
``tier_feature_unavailable`` naming it. API key or dashboard session, like the analytics
API; another organisation's receipt is a 404. Query parameters and shapes are in
``healthcare.serializers``; the signed receipt is returned as stored
(``healthcare.renderers``); exports stream (``healthcare.export``).
"""

from __future__ import annotations

from typing import Any

from django.core.handlers.asgi import ASGIRequest
from django.http import StreamingHttpResponse
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

from accounts.api.base import OrganizationScopedApi, validated
from aqta.openapi import ORGANIZATION_PARAMETER, error_responses
from aqta.parsers import JSONParser
from gateway import openapi as _openapi  # noqa: F401  (registers the auth schemes)
from gateway import trace_ids
from gateway.analytics.serializers import TraceOutput
from healthcare import export
from healthcare.access import receipts_require
from healthcare.chain import chain_link
from healthcare.models import Receipt
from healthcare.renderers import ReceiptJSONRenderer, verbatim
from healthcare.selectors import (
    document_object,
    receipt_get,
    receipt_list,
    receipt_page_after,
    receipt_trace,
)
from healthcare.serializers import (
    DocumentVerificationOutput,
    ExportQuery,
    ReceiptCursorField,
    ReceiptDetailOutput,
    ReceiptItemOutput,
    ReceiptListOutput,
    ReceiptListQuery,
    SignedReceiptOutput,
    VerificationOutput,
)
from healthcare.services import (
    Actor,
    document_verify_record,
    export_record,
    receipt_verify_record,
)

TAG = "receipts"
ERRORS = error_responses(
    400,
    401,
    403,
    404,
    s403="`tier_feature_unavailable`: receipts are part of the Healthcare tier; "
    "`csrf_failed` for a session write without X-CSRFToken.",
    s404="No such receipt in this organisation (`not_found`), also another organisation's id.",
)


class ReceiptsApi(OrganizationScopedApi):
    """The caller's organisation, which must have receipts."""

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        organization, _ = self.organization_context(request)
        receipts_require(organization)
        self.organization = organization

    def caller(self, request: Request) -> Actor:
        return Actor(self.actor(request), self.actor_label(request), request._request)

    @staticmethod
    def query(request: Request) -> dict[str, str]:
        """Query parameters, empty ones treated as absent (as forms send them)."""
        return {k: v for k, v in request.query_params.dict().items() if v != ""}


class ReceiptListApi(ReceiptsApi):
    @extend_schema(
        operation_id="receipts_list",
        tags=[TAG],
        summary="Receipts, newest first",
        description=(
            "The organisation's receipts (one per /v1 call), newest first, cursor-paginated "
            "(`limit` ≤ 500, follow `next`), filtered by issue time (`start`, `end`), "
            "`outcome`, `model`, API key (`key`) and `high_risk`. Unlinked receipts are "
            "linked into the chain first, so every item has its `sequence`."
        ),
        parameters=[ReceiptListQuery, ORGANIZATION_PARAMETER],
        responses={200: ReceiptListOutput, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        query = validated(ReceiptListQuery, self.query(request))
        chain_link(self.organization.pk)
        receipts = receipt_list(organization=self.organization, filters=query)
        if "cursor" in query:
            issued_at, receipt_id = query["cursor"]
            receipts = receipt_page_after(receipts, issued_at=issued_at, receipt_id=receipt_id)
        page = list(receipts[: query["limit"] + 1])
        has_more = len(page) > query["limit"]
        page = page[: query["limit"]]
        url = request.build_absolute_uri()
        cursor = ReceiptCursorField.encode(page[-1]) if has_more else None
        next_url = replace_query_param(url, "cursor", cursor) if cursor else None
        data = ReceiptItemOutput(page, many=True).data
        return Response({"object": "list", "data": data, "has_more": has_more, "next": next_url})


def _trace_link(receipt: Receipt) -> dict[str, Any]:
    pk = trace_ids.parse(receipt.trace_id)
    public = trace_ids.public(pk) if pk is not None else receipt.trace_id
    trace = receipt_trace(receipt=receipt)
    return {
        "id": public,
        "dashboard_url": reverse("dashboard:trace-detail", args=[public]) if pk else None,
        "analytics": TraceOutput(trace).data if trace is not None else None,
    }


def receipt_detail(receipt: Receipt) -> dict[str, Any]:
    """The detail body: the stored receipt verbatim, its chain fields and its trace."""
    document, error = document_object(receipt.document)
    return {
        "object": "receipt",
        "id": receipt.pk,
        "attestation_id": str(receipt.attestation_id),
        "receipt": verbatim(receipt.document) if document is not None else None,
        "document_error": error or None,
        "chain": {
            "sequence": receipt.sequence,
            "prev_hash": receipt.prev_hash,
            "chain_hash": receipt.chain_hash,
        },
        "api_key": str(receipt.api_key_id) if receipt.api_key_id else None,
        "high_risk": receipt.high_risk,
        "key_id": receipt.key_id,
        "trace": _trace_link(receipt),
        "verify_url": reverse("healthcare:receipt-verify", args=[receipt.pk]),
    }


REFERENCE = (
    "The receipt's numeric `id` or its `attestation_id` (a UUID). Another organisation's is a 404."
)


class ReceiptDetailApi(ReceiptsApi):
    renderer_classes = [ReceiptJSONRenderer]

    @extend_schema(
        operation_id="receipts_retrieve",
        tags=[TAG],
        summary="One receipt, exactly as signed",
        description=(
            "The stored signed receipt byte for byte in `receipt` (numbers as signed: "
            "`0.000015`, never `1.5e-05`), its place in the chain, and its trace: the "
            "dashboard page and the trace as the analytics API lists it. " + REFERENCE
        ),
        parameters=[ORGANIZATION_PARAMETER],
        responses={200: ReceiptDetailOutput, **ERRORS},
    )
    def get(self, request: Request, reference: str) -> Response:
        receipt = receipt_get(organization=self.organization, reference=reference)
        if receipt.sequence is None:
            chain_link(self.organization.pk)
            receipt.refresh_from_db()
        return Response(receipt_detail(receipt))


class ReceiptVerifyApi(ReceiptsApi):
    @extend_schema(
        operation_id="receipts_verify",
        tags=[TAG],
        summary="Verify a stored receipt",
        description=(
            "Checks the stored receipt: its fields and Ed25519 signature under the issuer's "
            "current or an earlier key (within that key's validity), the row against the "
            "signed document, and its position between its neighbours in the chain. "
            "`valid: false` with the first `reason` found; a corrupted row is a verdict, "
            "never an error. Recorded in the audit log (`receipt.verified`). No body. " + REFERENCE
        ),
        request=None,
        parameters=[ORGANIZATION_PARAMETER],
        responses={200: VerificationOutput, **ERRORS},
    )
    def post(self, request: Request, reference: str) -> Response:
        receipt = receipt_get(organization=self.organization, reference=reference)
        result = receipt_verify_record(receipt=receipt, actor=self.caller(request))
        receipt.refresh_from_db(fields=["sequence"])
        body = {
            "object": "receipt.verification",
            "id": receipt.pk,
            "attestation_id": str(receipt.attestation_id),
            "sequence": receipt.sequence,
            **result.as_dict(),
            "checked_at": timezone.now(),
        }
        return Response(VerificationOutput(body).data)


class ReceiptDocumentVerifyApi(ReceiptsApi):
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="receipts_verify_document",
        tags=[TAG],
        summary="Verify a receipt document someone showed you",
        description=(
            "The request body is the receipt itself (the JSON object, as `aqta-verify-"
            "receipt` reads it; one line of the JSONL export). The same verdict as for a "
            "stored receipt's signature and fields, plus whether this organisation holds a "
            "receipt with its `attestation_id` (`stored`) and whether the stored copy is "
            "the same (`identical`). Anything that is not a valid receipt is `valid: "
            "false` with its reason; only a body that is not JSON at all is a 400. "
            "Recorded in the audit log (`receipt.document_verified`)."
        ),
        request=SignedReceiptOutput,
        parameters=[ORGANIZATION_PARAMETER],
        responses={200: DocumentVerificationOutput, **error_responses(400, 401, 403, 404, 415)},
    )
    def post(self, request: Request) -> Response:
        result = document_verify_record(
            organization=self.organization, document=request.data, actor=self.caller(request)
        )
        body = {"object": "receipt.document_verification", **result.as_dict()}
        return Response(DocumentVerificationOutput({**body, "checked_at": timezone.now()}).data)


class ReceiptExportApi(ReceiptsApi):
    def perform_content_negotiation(
        self, request: Request, force: bool = False
    ) -> tuple[BaseRenderer, str]:
        # `format` names the export here, not a renderer; errors are JSON.
        return JSONRenderer(), JSONRenderer.media_type

    @extend_schema(
        operation_id="receipts_export",
        tags=[TAG],
        summary="Export receipts: JSON Lines, CSV or FHIR",
        description=(
            "Every receipt matching the filters (default: all), in chain order, streamed: "
            "`jsonl` one signed receipt per line, exactly as stored (each verifies with "
            "`aqta-verify-receipt`); `csv` with the chain fields; `fhir` a FHIR R4 Bundle "
            "(type collection) of AuditEvent resources carrying the signed receipt. "
            "Recorded in the audit log (`receipt.exported`)."
        ),
        parameters=[ExportQuery, ORGANIZATION_PARAMETER],
        responses={
            (200, "application/x-ndjson"): OpenApiResponse(OpenApiTypes.STR),
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR),
            (200, "application/fhir+json"): OpenApiResponse(OpenApiTypes.OBJECT),
            **ERRORS,
        },
        examples=[
            OpenApiExample(
                "One line of JSON Lines",
                response_only=True,
                media_type="application/x-ndjson",
                value='{"attestation_id":"…","cost_prevented_eur":0.000015,…,"v":1}\n',
            )
        ],
    )
    def get(self, request: Request) -> StreamingHttpResponse:
        query = validated(ExportQuery, self.query(request))
        export_format = query.pop("format")
        write, content_type, extension = export.WRITERS[export_format]
        export_record(
            organization=self.organization,
            actor=self.caller(request),
            export_format=export_format,
            filters=query,
        )
        chunks = write(export.export_pages(organization=self.organization, filters=query))
        asgi = isinstance(request._request, ASGIRequest)
        response = StreamingHttpResponse(
            export.async_chunks(chunks) if asgi else chunks, content_type=content_type
        )
        name = f"aqta-receipts-{timezone.now():%Y%m%d-%H%M%S}.{extension}"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        response["Cache-Control"] = "no-store"
        return response
