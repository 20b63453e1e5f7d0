"""``/api/compliance/bias-detection`` and ``/api/compliance/probe-sets`` (Healthcare tier;
docs/bias.md). Members read; owners, admins and API keys start runs and manage sets."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.base import OrganizationScopedApi, validated
from accounts.models import Membership, Organization
from aqta.errors import AqtaError, ErrorCode
from aqta.openapi import ORGANIZATION_PARAMETER, error_responses
from billing.selectors import model_ids_known
from compliance.bias.passive import passive_run_create
from compliance.bias.probes import (
    DEFAULT_PROBE_SET,
    ProbeSetError,
    probe_set_validate,
    probe_variants,
)
from compliance.bias.runner import probe_run_create
from compliance.models import BiasMethod, BiasRun, ProbeCall, ProbeSet
from compliance.services import audit_event_record
from healthcare.access import bias_detection_require

TAGS = ["compliance"]
DEFAULT = "default"
PASSIVE_DEFAULT_DAYS = 30
PERIOD_MAX_DAYS = 366
LIST_MAX = 100


class BiasRunInput(serializers.Serializer):
    method = serializers.ChoiceField(choices=BiasMethod.choices, default=BiasMethod.PROBE)
    model = serializers.CharField(
        max_length=120, required=False, help_text="Probe runs: the model to probe."
    )
    probe_set = serializers.CharField(
        max_length=64, default=DEFAULT, help_text="`default`, or the id of one of your probe sets."
    )
    repetitions = serializers.IntegerField(min_value=1, max_value=100, default=3)
    budget_cap_eur = serializers.DecimalField(
        max_digits=12,
        decimal_places=2,
        min_value=Decimal("0.01"),
        default=Decimal("5.00"),
        help_text="Probe runs stop when their calls have cost this much (the run key's budget).",
    )
    concurrency = serializers.IntegerField(min_value=1, max_value=16, default=4)
    start = serializers.DateField(required=False, help_text="Passive: first day (UTC).")
    end = serializers.DateField(required=False, help_text="Passive: last day (UTC), included.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["method"] == BiasMethod.PROBE:
            if not attrs.get("model"):
                raise serializers.ValidationError(
                    {"model": "A probe run needs the model to probe."}
                )
            return attrs
        today = timezone.now().date()
        end = attrs.get("end") or today
        start = attrs.get("start") or end - timedelta(days=PASSIVE_DEFAULT_DAYS - 1)
        if start > end:
            raise serializers.ValidationError({"start": "start must not be after end."})
        if (end - start).days + 1 > PERIOD_MAX_DAYS:
            raise serializers.ValidationError({"end": f"At most {PERIOD_MAX_DAYS} days."})
        attrs["start"], attrs["end"] = start, end
        return attrs


class ListQuery(serializers.Serializer):
    limit = serializers.IntegerField(min_value=1, max_value=LIST_MAX, default=20)
    after = serializers.UUIDField(required=False, help_text="The last id of the previous page.")


class ProbeSetInput(serializers.Serializer):
    name = serializers.CharField(max_length=120)
    definition = serializers.JSONField()


def _flags(findings: Any) -> list[dict[str, Any]]:
    return [
        {
            "attribute": f.get("attribute"),
            "outcome": f.get("outcome"),
            "best_group": f.get("best_group"),
            "worst_group": f.get("worst_group"),
            "min_impact_ratio": f.get("min_impact_ratio"),
            "q_value": f.get("q_value"),
        }
        for f in findings or []
        if isinstance(f, dict) and f.get("status") == "flagged"
    ]


def run_data(run: BiasRun, *, detail: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": str(run.pk),
        "object": "bias_run",
        "method": run.method,
        "status": run.status,
        "progress": run.progress,
        "step": run.step,
        "model": run.model or None,
        "probe_set": {
            "id": str(run.probe_set_id) if run.probe_set_id else DEFAULT,
            "name": run.probe_set_name,
        },
        "repetitions": run.repetitions if run.method == BiasMethod.PROBE else None,
        "budget_cap_eur": str(run.budget_cap_eur) if run.budget_cap_eur is not None else None,
        "spent_eur": str(run.spent_eur),
        "period": (
            {"start": run.period_start.isoformat(), "end": run.period_end.isoformat()}
            if run.period_start and run.period_end
            else None
        ),
        "calls": {"total": run.calls_total, "done": run.calls_done, "failed": run.calls_failed},
        "stopped_reason": run.stopped_reason or None,
        "summary": run.summary or None,
        "flags": _flags(run.findings),
        "error": run.error or None,
        "created_at": run.created_at.isoformat(),
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
    }
    if detail:
        data["findings"] = run.findings or []
        data["api_key"] = (
            {"id": str(run.api_key_id), "name": run.api_key.name} if run.api_key else None
        )
        if run.method == BiasMethod.PROBE:
            counts: dict[str, int] = {}
            for status in run.calls.values_list("status", flat=True):
                counts[status] = counts.get(status, 0) + 1
            data["calls"]["by_status"] = counts
    return data


def _run_get(organization: Organization, reference: str) -> BiasRun:
    try:
        pk = uuid.UUID(reference)
    except ValueError:
        pk = None
    run = (
        BiasRun.objects.select_related("api_key").filter(organization=organization, pk=pk).first()
        if pk
        else None
    )
    if run is None:
        raise AqtaError("No such bias detection run.", code=ErrorCode.NOT_FOUND)
    return run


def probe_set_get(
    organization: Organization, reference: str
) -> tuple[dict[str, Any], str, ProbeSet | None]:
    """(definition, name, stored set or None for the default) of a probe set reference."""
    if reference == DEFAULT:
        return DEFAULT_PROBE_SET, str(DEFAULT_PROBE_SET["name"]), None
    try:
        pk = uuid.UUID(reference)
    except ValueError:
        pk = None
    stored = ProbeSet.objects.filter(organization=organization, pk=pk).first() if pk else None
    if stored is None:
        raise AqtaError("No such probe set.", code=ErrorCode.NOT_FOUND, param="probe_set")
    return stored.definition, stored.name, stored


class BiasApi(OrganizationScopedApi):
    organization: Organization
    membership: Membership | None

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        self.organization, self.membership = self.organization_context(request)
        bias_detection_require(self.organization)

    def require_manager(self, what: str) -> None:
        if self.membership is not None and not self.membership.can_manage:
            raise AqtaError(
                f"Only owners and admins can {what}; members can read the results.",
                code=ErrorCode.PERMISSION_DENIED,
            )

    def paged(self, request: Request, rows: Any, render: Any) -> Response:
        query = validated(ListQuery, request.query_params.dict())
        if "after" in query:
            last = rows.filter(pk=query["after"]).values_list("created_at", flat=True).first()
            if last is not None:
                rows = rows.filter(created_at__lt=last)
        page = list(rows[: query["limit"] + 1])
        return Response(
            {
                "object": "list",
                "data": [render(row) for row in page[: query["limit"]]],
                "has_more": len(page) > query["limit"],
            }
        )


ERRORS = error_responses(
    400, 401, 403, 404, s403="`tier_feature_unavailable`; `permission_denied` for members."
)


class BiasRunListApi(BiasApi):
    @extend_schema(
        operation_id="bias_detection_list",
        tags=TAGS,
        summary="Bias detection runs and their flags, newest first",
        parameters=[ListQuery, ORGANIZATION_PARAMETER],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        rows = BiasRun.objects.filter(organization=self.organization).order_by("-created_at", "-id")
        return self.paged(request, rows, run_data)

    @extend_schema(
        operation_id="bias_detection_start",
        tags=TAGS,
        summary="Start a bias detection run",
        description=(
            "`method: probe` sends every variant of the probe set to `model` through the "
            "gateway (billed, rate-limited, with receipts) and compares the groups paired; "
            "`method: passive` compares groups found in the logged traffic of a period. "
            "Answers 202 with the run; poll `GET /api/compliance/bias-detection/{id}`."
        ),
        request=BiasRunInput,
        parameters=[ORGANIZATION_PARAMETER],
        responses={202: OpenApiTypes.OBJECT, **ERRORS},
    )
    def post(self, request: Request) -> Response:
        self.require_manager("start bias detection runs")
        data = validated(BiasRunInput, request.data)
        definition, name, stored = probe_set_get(self.organization, data["probe_set"])
        actor, label = self.actor(request), self.actor_label(request)
        if data["method"] == BiasMethod.PASSIVE:
            run = passive_run_create(
                organization=self.organization,
                actor=actor,
                actor_label=label,
                start=data["start"],
                end=data["end"],
                definition=definition,
                probe_set_name=name,
                probe_set=stored,
            )
        else:
            model = data["model"]
            if not model_ids_known(model_ids=[model]):
                raise AqtaError(
                    f"Unknown model {model!r}.", code=ErrorCode.MODEL_NOT_FOUND, param="model"
                )
            calls = len(probe_variants(definition, data["repetitions"]))
            if calls > settings.AQTA_BIAS_MAX_CALLS:
                raise AqtaError(
                    f"This run would send {calls} calls; at most {settings.AQTA_BIAS_MAX_CALLS}.",
                    code=ErrorCode.INVALID_VALUE,
                    param="repetitions",
                )
            run = probe_run_create(
                organization=self.organization,
                actor=actor,
                actor_label=label,
                model=model,
                definition=definition,
                probe_set_name=name,
                probe_set=stored,
                repetitions=data["repetitions"],
                budget_cap_eur=data["budget_cap_eur"],
                concurrency=data["concurrency"],
            )
        from compliance.tasks import bias_run

        transaction.on_commit(lambda: bias_run.delay(str(run.pk)))
        run.refresh_from_db()  # the embedded mode ran it already (eager)
        return Response(run_data(run), status=202)


class BiasRunDetailApi(BiasApi):
    @extend_schema(
        operation_id="bias_detection_get",
        tags=TAGS,
        summary="One run: progress, per-group tables and flags",
        parameters=[
            OpenApiParameter("id", OpenApiTypes.UUID, OpenApiParameter.PATH),
            ORGANIZATION_PARAMETER,
        ],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
    )
    def get(self, request: Request, reference: str) -> Response:
        return Response(run_data(_run_get(self.organization, reference), detail=True))


class BiasRunCallsApi(BiasApi):
    @extend_schema(
        operation_id="bias_detection_calls",
        tags=TAGS,
        summary="The probe calls of a run and how each answer was classified",
        parameters=[
            OpenApiParameter("id", OpenApiTypes.UUID, OpenApiParameter.PATH),
            ORGANIZATION_PARAMETER,
        ],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
    )
    def get(self, request: Request, reference: str) -> Response:
        run = _run_get(self.organization, reference)
        calls = ProbeCall.objects.filter(run=run).order_by("index")[: LIST_MAX * 100]
        return Response(
            {
                "object": "list",
                "data": [
                    {
                        "index": c.index,
                        "case_id": c.case_id,
                        "attribute": c.attribute,
                        "group": c.group,
                        "repetition": c.repetition,
                        "status": c.status,
                        "sends": c.sends,
                        "http_status": c.http_status,
                        "error_code": c.error_code or None,
                        "trace_id": c.trace_id or None,
                        "cached": c.cached,
                        "cost_eur": str(c.cost_eur),
                        "outcomes": c.outcomes,
                        "answer_excerpt": c.answer_excerpt,
                    }
                    for c in calls
                ],
            }
        )


def probe_set_data(
    definition: dict[str, Any], name: str, stored: ProbeSet | None
) -> dict[str, Any]:
    cases = definition.get("cases", [])
    return {
        "id": str(stored.pk) if stored else DEFAULT,
        "object": "probe_set",
        "name": name,
        "cases": len(cases),
        "attributes": sorted(definition.get("attributes", {})),
        "variants_per_repetition": len(probe_variants(definition, 1)),
        "created_at": stored.created_at.isoformat() if stored else None,
        "definition": definition,
    }


class ProbeSetListApi(BiasApi):
    @extend_schema(
        operation_id="probe_sets_list",
        tags=TAGS,
        summary="The default probe set and the organisation's own",
        parameters=[ORGANIZATION_PARAMETER],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        sets = [probe_set_data(DEFAULT_PROBE_SET, str(DEFAULT_PROBE_SET["name"]), None)]
        for stored in ProbeSet.objects.filter(organization=self.organization):
            sets.append(probe_set_data(stored.definition, stored.name, stored))
        return Response({"object": "list", "data": sets})

    @extend_schema(
        operation_id="probe_sets_create",
        tags=TAGS,
        summary="Add a probe set",
        request=ProbeSetInput,
        parameters=[ORGANIZATION_PARAMETER],
        responses={
            201: OpenApiTypes.OBJECT,
            **error_responses(
                400, 401, 403, 404, 409, s409="`conflict`: a probe set of that name exists."
            ),
        },
    )
    def post(self, request: Request) -> Response:
        self.require_manager("add probe sets")
        data = validated(ProbeSetInput, request.data)
        try:
            definition = probe_set_validate(data["definition"])
        except ProbeSetError as error:
            raise AqtaError(
                str(error),
                code=ErrorCode.INVALID_VALUE,
                param=f"definition.{error.field}".rstrip("."),
            ) from None
        try:
            with transaction.atomic():
                stored = ProbeSet.objects.create(
                    organization=self.organization,
                    name=data["name"],
                    definition=definition,
                    created_by=self.actor(request),
                )
                audit_event_record(
                    action="probe_set.created",
                    organization=self.organization,
                    actor=self.actor(request),
                    actor_label=self.actor_label(request),
                    target=str(stored.pk),
                    data={"name": stored.name, "cases": len(definition.get("cases", []))},
                )
        except IntegrityError:
            raise AqtaError(
                f"A probe set named {data['name']!r} exists.", code=ErrorCode.CONFLICT, param="name"
            ) from None
        return Response(probe_set_data(definition, stored.name, stored), status=201)


class ProbeSetDetailApi(BiasApi):
    @extend_schema(
        operation_id="probe_sets_get",
        tags=TAGS,
        summary="One probe set (`default` for the one that ships)",
        parameters=[
            OpenApiParameter("id", OpenApiTypes.STR, OpenApiParameter.PATH),
            ORGANIZATION_PARAMETER,
        ],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
    )
    def get(self, request: Request, reference: str) -> Response:
        definition, name, stored = probe_set_get(self.organization, reference)
        return Response(probe_set_data(definition, name, stored))

    @extend_schema(
        operation_id="probe_sets_delete",
        tags=TAGS,
        summary="Delete one of the organisation's probe sets (runs keep their copy)",
        parameters=[
            OpenApiParameter("id", OpenApiTypes.STR, OpenApiParameter.PATH),
            ORGANIZATION_PARAMETER,
        ],
        responses={204: OpenApiResponse(description="Deleted."), **ERRORS},
    )
    def delete(self, request: Request, reference: str) -> Response:
        self.require_manager("delete probe sets")
        if reference == DEFAULT:
            raise AqtaError(
                "The default probe set cannot be deleted.", code=ErrorCode.INVALID_VALUE
            )
        _, name, stored = probe_set_get(self.organization, reference)
        assert stored is not None
        with transaction.atomic():
            stored.delete()
            audit_event_record(
                action="probe_set.deleted",
                organization=self.organization,
                actor=self.actor(request),
                actor_label=self.actor_label(request),
                target=reference,
                data={"name": name},
            )
        return Response(status=204)
