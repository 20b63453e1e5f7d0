"""/api/analytics/*: requests and costs of the caller's organisation, JSON or CSV.

Thin views over ``gateway.analytics``; aggregates come from the rollups. Starter tier and
above: a tier without analytics gets 403 ``tier_feature_unavailable``. Query parameters and
response shapes are in ``gateway.analytics.serializers``, the CSV renderer in
``gateway.analytics.renderers``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_serializer,
)
from rest_framework import serializers
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

from accounts.api.base import OrganizationScopedApi, validated
from aqta.errors import AqtaError, ErrorCode
from aqta.openapi import ORGANIZATION_PARAMETER, error_responses
from billing.models import Analytics, Tier
from compliance.records import audit_export_record
from gateway import openapi as _openapi  # noqa: F401  (registers the auth schemes)
from gateway.analytics import rollups, selectors
from gateway.analytics.renderers import CsvRenderer, csv_response
from gateway.analytics.serializers import (
    CostRowOutput,
    CursorField,
    GroupOutput,
    MonthOutput,
    RangeQuery,
    StatsOutput,
    TraceOutput,
    choice,
    represent_many,
)
from gateway.models import Trace, TraceStatus

DEFAULT_PAGE = 50
MAX_PAGE = 500
FORMATS = ("json", "csv")
JSON = "application/json"

View = TypeVar("View", bound=Callable[..., Any])


FORMAT_PARAMETER = OpenApiParameter(
    "format",
    str,
    enum=list(FORMATS),
    description="`csv` answers text/csv with a header row (also with `Accept: text/csv`).",
)
ERRORS = error_responses(
    400,
    401,
    403,
    404,
    s403="`tier_feature_unavailable`: the tier has no analytics; `csrf_failed`, "
    "`permission_denied`.",
)


def table_schema(
    *,
    operation_id: str,
    summary: str,
    description: str,
    query: type[serializers.Serializer],
    output: type[serializers.Serializer],
    csv_description: str,
    example: OpenApiExample,
) -> Callable[[View], View]:
    """The schema of an analytics GET: its query, the JSON ``output`` or a CSV table."""
    return extend_schema(
        operation_id=operation_id,
        tags=["analytics"],
        summary=summary,
        description=description,
        parameters=[query, FORMAT_PARAMETER, ORGANIZATION_PARAMETER],
        responses={
            (200, JSON): output,
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description=csv_description),
            **ERRORS,
        },
        examples=[example],
    )


def _needed_tier() -> str:
    tiers = Tier.objects.exclude(analytics=Analytics.NONE).order_by("sort_order", "slug")
    return tiers.values_list("name", flat=True).first() or "a paid"


class AnalyticsApi(OrganizationScopedApi):
    """The organisation's analytics, for tiers that include them; JSON or CSV."""

    renderer_classes = [JSONRenderer, CsvRenderer]

    def perform_content_negotiation(
        self, request: Request, force: bool = False
    ) -> tuple[BaseRenderer, str]:
        requested = request.query_params.get("format")
        if requested and requested not in FORMATS:
            # Reported after authentication (in initial), as JSON, naming the parameter.
            self.bad_format = requested
            return JSONRenderer(), JSONRenderer.media_type
        return super().perform_content_negotiation(request, force=force)

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        organization, _ = self.organization_context(request)
        tier = organization.tier
        if tier.analytics == Analytics.NONE:
            raise AqtaError(
                f"Analytics needs the {_needed_tier()} tier or above; "
                f"this organisation is on {tier.name}.",
                code=ErrorCode.TIER_FEATURE_UNAVAILABLE,
            )
        if getattr(self, "bad_format", None):
            raise AqtaError(
                f"format must be one of: {', '.join(FORMATS)}.",
                code=ErrorCode.INVALID_PARAMETER,
                param="format",
            )
        rollups.rollups_refresh_without_beat()
        self.organization = organization

    def handle_exception(self, exc: Exception) -> Response:
        # Errors keep the JSON envelope even when CSV was asked for.
        self.request.accepted_renderer = JSONRenderer()
        self.request.accepted_media_type = JSONRenderer.media_type
        return super().handle_exception(exc)

    def finalize_response(
        self, request: Request, response: Response, *args: Any, **kwargs: Any
    ) -> Response:
        # Only the tables of the GET handlers are CSV; anything else (OPTIONS' description
        # of the endpoint) is JSON whatever the format asked for.
        is_table = isinstance(getattr(response, "data", None), dict) and "rows" in response.data
        if getattr(request, "accepted_renderer", None) is not None and not is_table:
            request.accepted_renderer = JSONRenderer()
            request.accepted_media_type = JSONRenderer.media_type
        return super().finalize_response(request, response, *args, **kwargs)

    @staticmethod
    def query(request: Request) -> dict[str, str]:
        """Query parameters, with empty ones treated as absent (as forms send them)."""
        params = request.query_params.dict()  # the last value of a repeated parameter
        return {k: v for k, v in params.items() if v != "" and k != "format"}

    @staticmethod
    def wants_csv(request: Request) -> bool:
        return request.accepted_renderer.format == "csv"

    def export_record(self, request: Request, kind: str, rows: int) -> None:
        """A CSV is an export: recorded in the organisation's audit trail."""
        params = {**self.query(request), "format": "csv"}
        audit_export_record(request, kind, params, organization=self.organization, rows=rows)


class AnalyticsRequestsApi(AnalyticsApi):
    class Query(RangeQuery):
        api_key = serializers.UUIDField(required=False, help_text="Only this key's requests.")
        model = serializers.CharField(required=False, max_length=120)
        provider = serializers.CharField(required=False, max_length=40)
        status = choice([s.value for s in TraceStatus], required=False)
        error_code = serializers.CharField(
            required=False, max_length=40, help_text="e.g. rate_limit_exceeded, loop_detected."
        )
        group_by = choice(["hour", "day", "model", "key", "provider"], default="day")
        limit = serializers.IntegerField(min_value=1, max_value=MAX_PAGE, default=DEFAULT_PAGE)
        cursor = CursorField(required=False)

    # The ignores marked "field": a field named like a Serializer attribute (`data`,
    # `errors`), as explained in gateway.analytics.serializers.
    @extend_schema_serializer(component_name="AnalyticsRequests")
    class Output(serializers.Serializer):
        @extend_schema_serializer(component_name="UsageAggregates")
        class Aggregates(serializers.Serializer):
            group_by = serializers.CharField()
            data = GroupOutput(many=True)  # type: ignore[assignment]  # field

        object = serializers.CharField(default="analytics.requests")
        start = serializers.DateTimeField()
        end = serializers.DateTimeField()
        data = TraceOutput(  # type: ignore[assignment]  # field
            many=True, help_text="This page of traces, newest first."
        )
        has_more = serializers.BooleanField()
        next = serializers.URLField(allow_null=True, help_text="The next page, or null.")
        summary = StatsOutput(help_text="The whole range (api_key, model, provider filters).")
        aggregates = Aggregates()

    @table_schema(
        operation_id="analytics_requests",
        summary="Requests: traces and aggregates",
        description=(
            "A page of the organisation's traces (newest first, filtered), the summary of "
            "the range, and aggregates grouped by hour, day, model, key or provider: "
            "requests, errors, error rate, p50/p95 latency, tokens, EUR cost. Aggregates "
            "come from hourly and daily rollups refreshed every minute; they honour the "
            "range, `api_key`, `model` and `provider`, not `status` or `error_code` (which "
            "filter the traces). Percentiles are estimated within latency histogram "
            "buckets. `?format=csv` returns the page of traces as CSV (with a "
            '`Link: <…>; rel="next"` header). '
            "Starter tier and above."
        ),
        query=Query,
        output=Output,
        csv_description="Traces, CSV.",
        example=OpenApiExample(
            "Daily aggregates",
            response_only=True,
            media_type=JSON,
            value={
                "object": "analytics.requests",
                "start": "2025-03-01T00:00:00Z",
                "end": "2025-03-08T00:00:00Z",
                "data": [],
                "has_more": False,
                "next": None,
                "summary": {
                    "requests": 1200,
                    "errors": 12,
                    "blocked": 3,
                    "error_rate": 0.01,
                    "prompt_tokens": 240000,
                    "completion_tokens": 96000,
                    "tokens": 336000,
                    "cost_eur": "0.84000000",
                    "p50_ms": 640,
                    "p95_ms": 1890,
                },
                "aggregates": {"group_by": "day", "data": []},
            },
        ),
    )
    def get(self, request: Request) -> Response:
        query = validated(self.Query, self.query(request))
        traces = selectors.trace_list(organization=self.organization, filters=query)
        if "cursor" in query:
            created_at, trace_id = query["cursor"]
            traces = selectors.trace_page_after(traces, created_at=created_at, trace_id=trace_id)
        page = list(traces[: query["limit"] + 1])
        has_more = len(page) > query["limit"]
        page = page[: query["limit"]]
        next_url = self._next_url(request, query, page[-1]) if has_more else None
        data = represent_many(TraceOutput, page)
        if self.wants_csv(request):
            self.export_record(request, "analytics.requests", len(data))
            link = {"Link": f'<{next_url}>; rel="next"'} if next_url else {}
            header = list(TraceOutput.Meta.fields)
            return csv_response(data, header, "aqta-requests.csv", **link)
        usage = selectors.usage_aggregates(
            organization=self.organization,
            start=query["start"],
            end=query["end"],
            group_by=query["group_by"],
            api_key_id=query.get("api_key"),
            model=query.get("model"),
            provider=query.get("provider"),
        )
        body = {
            "object": "analytics.requests",
            "start": query["start"],
            "end": query["end"],
            "data": data,
            "has_more": has_more,
            "next": next_url,
            "summary": StatsOutput(usage["total"]).data,
            "aggregates": {
                "group_by": query["group_by"],
                "data": represent_many(GroupOutput, usage["groups"]),
            },
        }
        return Response(body)

    @staticmethod
    def _next_url(request: Request, query: dict, last: Trace) -> str:
        # The range is pinned, so "now" moving on does not shift the pages.
        url = request.build_absolute_uri()
        url = replace_query_param(url, "start", query["start"].isoformat())
        url = replace_query_param(url, "end", query["end"].isoformat())
        return replace_query_param(url, "cursor", CursorField.encode(last))


class AnalyticsCostsApi(AnalyticsApi):
    class Query(RangeQuery):
        group_by = choice(["day", "model", "key", "provider"], default="day")

        def default_start(self, end: datetime) -> datetime:
            """The start of the month the range ends in (this month, by default)."""
            last = end - timedelta(microseconds=1)
            return rollups.instant(date(last.year, last.month, 1))

    @extend_schema_serializer(component_name="AnalyticsCosts")
    class Output(serializers.Serializer):
        @extend_schema_serializer(component_name="CostTotal")
        class Total(serializers.Serializer):
            requests = serializers.IntegerField()
            errors = serializers.IntegerField()  # type: ignore[assignment]  # field
            tokens = serializers.IntegerField()
            cost_eur = serializers.DecimalField(max_digits=18, decimal_places=8)

        object = serializers.CharField(default="analytics.costs")
        currency = serializers.CharField(default="EUR")
        start = serializers.DateTimeField()
        end = serializers.DateTimeField()
        group_by = serializers.CharField()
        total = Total()
        data = CostRowOutput(many=True)  # type: ignore[assignment]  # field
        month = MonthOutput(help_text="This calendar month against quota and budget.")

    @table_schema(
        operation_id="analytics_costs",
        summary="Costs in EUR, month-to-date and projection",
        description=(
            "EUR cost (with requests, errors and tokens) grouped by day, model, key or "
            "provider over the range (default: this month so far), plus this calendar "
            "month against the quota and the EUR budget, projected linearly to its end. "
            "Served from the rollups. `?format=csv` returns the grouped rows as CSV. "
            "Starter tier and above."
        ),
        query=Query,
        output=Output,
        csv_description="Rows, CSV.",
        example=OpenApiExample(
            "By model",
            response_only=True,
            media_type=JSON,
            value={
                "object": "analytics.costs",
                "currency": "EUR",
                "start": "2025-03-01T00:00:00Z",
                "end": "2025-03-15T12:00:00Z",
                "group_by": "model",
                "total": {"requests": 900, "errors": 4, "tokens": 250000, "cost_eur": "1.2"},
                "data": [
                    {
                        "key": "gpt-4o",
                        "label": "GPT-4o",
                        "requests": 300,
                        "errors": 1,
                        "tokens": 90000,
                        "cost_eur": "1.10000000",
                    }
                ],
                "month": {
                    "month": "2025-03",
                    "requests": 896,
                    "quota": 100000,
                    "cost_eur": "1.20000000",
                    "budget_eur": "50.00",
                    "projected_cost_eur": "2.48",
                    "projected_requests": 1851,
                    "rate_limit_per_minute": 100,
                },
            },
        ),
    )
    def get(self, request: Request) -> Response:
        query = validated(self.Query, self.query(request))
        rows = selectors.usage_by(
            organization=self.organization,
            start=query["start"],
            end=query["end"],
            dimension=query["group_by"],
        )
        data = represent_many(CostRowOutput, rows)
        if self.wants_csv(request):
            self.export_record(request, "analytics.costs", len(data))
            return csv_response(data, list(CostRowOutput().fields), "aqta-costs.csv")
        total = {name: sum(row[name] for row in rows) for name in ("requests", "errors", "tokens")}
        total["cost_eur"] = sum(row["cost_eur"] for row in rows)
        body = {
            "object": "analytics.costs",
            "currency": "EUR",
            "start": query["start"],
            "end": query["end"],
            "group_by": query["group_by"],
            "total": self.Output.Total(total).data,
            "data": data,
            "month": MonthOutput(selectors.month_status(organization=self.organization)).data,
        }
        return Response(body)
