"""``POST /api/compliance/report`` and ``/api/compliance/reports`` (Healthcare tier;
docs/reports.md). Members read and download; owners, admins and API keys request."""

from __future__ import annotations

import calendar
import re
import uuid
from datetime import date
from typing import Any

import orjson
from django.db import transaction
from django.http import HttpResponse
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.base import OrganizationScopedApi, validated
from accounts.models import Membership, Organization
from aqta.errors import AqtaError, ErrorCode
from aqta.openapi import ORGANIZATION_PARAMETER, error_responses
from compliance.models import ComplianceReport, JobStatus, ReportFormat
from compliance.reports.generate import public_id, report_create
from healthcare.access import compliance_reports_require

TAGS = ["compliance"]
MONTH = re.compile(r"(\d{4})-(\d{2})")
PERIOD_MAX_DAYS = 366
LIST_MAX = 100


PERIOD_SCHEMA = {
    "oneOf": [
        {"type": "string", "pattern": r"^\d{4}-\d{2}$", "example": "2026-11"},
        {
            "type": "object",
            "properties": {
                "start": {"type": "string", "format": "date"},
                "end": {"type": "string", "format": "date"},
            },
            "required": ["start", "end"],
            "additionalProperties": False,
        },
    ]
}


@extend_schema_field(PERIOD_SCHEMA)
class PeriodField(serializers.Field):
    """``"2026-11"`` (a calendar month) or ``{"start": "2026-11-01", "end": "2026-11-30"}``."""

    default_error_messages = {
        "invalid": 'Expected "YYYY-MM" or {{"start": "YYYY-MM-DD", "end": "YYYY-MM-DD"}}.'
    }

    def to_internal_value(self, data: Any) -> tuple[date, date]:
        if isinstance(data, str) and (match := MONTH.fullmatch(data)):
            year, month = int(match[1]), int(match[2])
            if not 1 <= month <= 12 or not 2000 <= year <= 2999:
                self.fail("invalid")
            return date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1])
        if isinstance(data, dict) and set(data) == {"start", "end"}:
            field = serializers.DateField()
            return field.run_validation(data["start"]), field.run_validation(data["end"])
        self.fail("invalid")
        raise AssertionError  # unreachable: fail() raises

    def to_representation(self, value: Any) -> Any:
        return value


class ReportInput(serializers.Serializer):
    period = PeriodField(help_text='"YYYY-MM", or {"start", "end"} (UTC days, both included).')
    format = serializers.ChoiceField(choices=ReportFormat.choices, default=ReportFormat.PDF)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        start, end = attrs["period"]
        today = timezone.now().date()
        if start > end:
            raise serializers.ValidationError({"period": "start must not be after end."})
        if start > today:
            raise serializers.ValidationError({"period": "The period has not begun."})
        if (end - start).days + 1 > PERIOD_MAX_DAYS:
            raise serializers.ValidationError({"period": f"At most {PERIOD_MAX_DAYS} days."})
        return attrs


class ListQuery(serializers.Serializer):
    limit = serializers.IntegerField(min_value=1, max_value=LIST_MAX, default=20)
    after = serializers.CharField(required=False, max_length=64)


def _pk(reference: str) -> uuid.UUID | None:
    text = reference[4:] if reference.startswith("rpt_") else reference
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def report_get(organization: Organization, reference: str) -> ComplianceReport:
    pk = _pk(reference)
    report = (
        ComplianceReport.objects.filter(organization=organization, pk=pk).defer("pdf").first()
        if pk
        else None
    )
    if report is None:
        raise AqtaError("No such report.", code=ErrorCode.NOT_FOUND)
    return report


def report_data(report: ComplianceReport, request: Request | None = None) -> dict[str, Any]:
    ready = report.status == JobStatus.COMPLETED
    download = reverse("compliance:report-download", args=[public_id(report)])
    return {
        "id": public_id(report),
        "object": "compliance_report",
        "status": report.status,
        "progress": report.progress,
        "step": report.step,
        "period": {"start": report.period_start.isoformat(), "end": report.period_end.isoformat()},
        "format": report.format,
        "created_at": report.created_at.isoformat(),
        "finished_at": report.finished_at.isoformat() if report.finished_at else None,
        "error": report.error or None,
        "content_sha256": report.content_sha256 or None,
        "signature": report.signature or None,
        "key_id": report.key_id or None,
        "pdf_sha256": report.pdf_sha256 or None,
        "download_url": (request.build_absolute_uri(download) if request else download)
        if ready
        else None,
    }


class ReportsApi(OrganizationScopedApi):
    organization: Organization
    membership: Membership | None

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        self.organization, self.membership = self.organization_context(request)
        compliance_reports_require(self.organization)


ERRORS = error_responses(
    400, 401, 403, 404, s403="`tier_feature_unavailable`; `permission_denied` for members."
)


class ReportCreateApi(ReportsApi):
    @extend_schema(
        operation_id="compliance_report_create",
        tags=TAGS,
        summary="Generate a signed compliance report of a period",
        description=(
            "Answers 202 with the report; a worker collects, signs and renders it. Poll "
            "`GET /api/compliance/reports/{id}` for `progress`, then fetch `download_url`."
        ),
        request=ReportInput,
        parameters=[ORGANIZATION_PARAMETER],
        responses={202: OpenApiTypes.OBJECT, **ERRORS},
    )
    def post(self, request: Request) -> Response:
        if self.membership is not None and not self.membership.can_manage:
            raise AqtaError(
                "Only owners and admins can request reports; members can read them.",
                code=ErrorCode.PERMISSION_DENIED,
            )
        data = validated(ReportInput, request.data)
        start, end = data["period"]
        report = report_create(
            organization=self.organization,
            actor=self.actor(request),
            actor_label=self.actor_label(request),
            start=start,
            end=end,
            format=data["format"],
        )
        from compliance.tasks import report_generate

        transaction.on_commit(lambda: report_generate.delay(str(report.pk)))
        report.refresh_from_db()  # the embedded mode generated it already (eager)
        return Response(report_data(report, request), status=202)


class ReportListApi(ReportsApi):
    @extend_schema(
        operation_id="compliance_reports_list",
        tags=TAGS,
        summary="The organisation's reports, newest first",
        parameters=[ListQuery, ORGANIZATION_PARAMETER],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        query = validated(ListQuery, request.query_params.dict())
        rows = (
            ComplianceReport.objects.filter(organization=self.organization)
            .defer("pdf", "document")
            .order_by("-created_at", "-id")
        )
        if "after" in query and (pk := _pk(query["after"])):
            last = rows.filter(pk=pk).values_list("created_at", flat=True).first()
            if last is not None:
                rows = rows.filter(created_at__lt=last)
        page = list(rows[: query["limit"] + 1])
        return Response(
            {
                "object": "list",
                "data": [report_data(r, request) for r in page[: query["limit"]]],
                "has_more": len(page) > query["limit"],
            }
        )


REFERENCE = OpenApiParameter("id", OpenApiTypes.STR, OpenApiParameter.PATH)


class ReportDetailApi(ReportsApi):
    @extend_schema(
        operation_id="compliance_report_get",
        tags=TAGS,
        summary="A report's status, progress, hashes and download link",
        parameters=[REFERENCE, ORGANIZATION_PARAMETER],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
    )
    def get(self, request: Request, reference: str) -> Response:
        return Response(report_data(report_get(self.organization, reference), request))


def report_file(report: ComplianceReport) -> HttpResponse:
    """The finished report: its PDF, or the signed JSON document."""
    if report.status != JobStatus.COMPLETED or report.document is None:
        raise AqtaError(
            f"The report is {report.status}; download it once it is completed.",
            code=ErrorCode.CONFLICT,
        )
    name = f"aqta-report-{report.period_start}-{report.period_end}"
    if report.format == ReportFormat.PDF:
        pdf = ComplianceReport.objects.filter(pk=report.pk).values_list("pdf", flat=True).first()
        response = HttpResponse(bytes(pdf or b""), content_type="application/pdf")
        response["Content-Disposition"] = f'attachment; filename="{name}.pdf"'
    else:
        body = orjson.dumps(report.document, option=orjson.OPT_INDENT_2)
        response = HttpResponse(body, content_type="application/json")
        response["Content-Disposition"] = f'attachment; filename="{name}.json"'
    response["X-Content-Type-Options"] = "nosniff"
    return response


class ReportDownloadApi(ReportsApi):
    @extend_schema(
        operation_id="compliance_report_download",
        tags=TAGS,
        summary="Download a finished report (PDF or signed JSON)",
        parameters=[REFERENCE, ORGANIZATION_PARAMETER],
        responses={
            (200, "application/pdf"): OpenApiTypes.BINARY,
            (200, "application/json"): OpenApiTypes.OBJECT,
            **error_responses(401, 403, 404, 409, s409="`conflict`: not completed yet."),
        },
    )
    def get(self, request: Request, reference: str) -> HttpResponse:
        return report_file(report_get(self.organization, reference))
