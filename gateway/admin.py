from __future__ import annotations

import json
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from redis.exceptions import RedisError

from aqta import redis as aqta_redis
from aqta.admin import ReadOnlyAdmin, operator
from billing.models import LanguageModel
from gateway import crypto, trace_ids
from gateway.models import (
    GatewayEvent,
    ModelDeployment,
    ProviderEndpoint,
    Trace,
    TraceDeadLetter,
    TraceStatus,
    UsageCounter,
)
from gateway.services import dead_letters_discard, dead_letters_replay
from gateway.storage import StorageUnavailable

# --- Provider health ----------------------------------------------------------------------
# The circuit breakers' Redis keys (gateway/dataplane/breaker.py), per deployment name.
BREAKER_OPEN_KEY = "aqta:cb:open:{}"
BREAKER_FAILURES_KEY = "aqta:cb:f:{}"
HEALTH_WINDOW = timedelta(hours=1)


@dataclass(frozen=True)
class Breaker:
    open_seconds: int  # 0 = closed
    failures: int


def _breakers(names: list[str]) -> dict[str, Breaker] | None:
    """Each deployment's breaker, in one Redis round trip; None when it cannot be read."""
    if not aqta_redis.enabled() or not names:
        return None
    try:
        with aqta_redis.sync_client().pipeline(transaction=False) as pipe:
            for name in names:
                pipe.ttl(BREAKER_OPEN_KEY.format(name))
                pipe.get(BREAKER_FAILURES_KEY.format(name))
            replies = pipe.execute()
    except RedisError:
        return None
    return {
        name: Breaker(max(int(replies[2 * i]), 0), int(replies[2 * i + 1] or 0))
        for i, name in enumerate(names)
    }


def _calls_last_hour(names: list[str]) -> dict[str, tuple[int, int]]:
    """(calls, failed calls) per deployment name over the last hour, in one query.

    Calls are admitted, uncached traces (blocked ones never reached a provider); failed
    ones answered 5xx (provider error, timeout, every deployment unavailable)."""
    if not names:
        return {}
    rows = (
        Trace.objects.filter(
            created_at__gte=timezone.now() - HEALTH_WINDOW,
            provider__in=names,
            status=TraceStatus.PASSED,
            cached=False,
        )
        .values("provider")
        .annotate(calls=Count("pk"), failed=Count("pk", filter=Q(http_status__gte=500)))
        .order_by()
    )
    return {row["provider"]: (row["calls"], row["failed"]) for row in rows}


def _breaker_text(names: list[str], breakers: dict[str, Breaker] | None) -> str:
    if not aqta_redis.enabled():
        # Embedded, breakers live in the one worker's memory, out of the admin's reach.
        return "breaker not shared (embedded)"
    if breakers is None:
        return "breaker state unavailable (Redis)"
    opened = [
        f"{name} ({breakers[name].open_seconds} s)" for name in names if breakers[name].open_seconds
    ]
    if opened:
        return "open: " + ", ".join(opened)
    failures = sum(breakers[name].failures for name in names)
    if failures:
        return f"closed, {failures} recent failure{'s' if failures != 1 else ''}"
    return "closed"


def _rate_text(names: list[str], calls: dict[str, tuple[int, int]]) -> str:
    total = sum(calls.get(name, (0, 0))[0] for name in names)
    failed = sum(calls.get(name, (0, 0))[1] for name in names)
    if not total:
        return "no calls in the last hour"
    return f"{failed / total:.1%} errors ({failed}/{total}) in the last hour"


def _render(
    names: list[str], breakers: dict[str, Breaker] | None, calls: dict[str, tuple[int, int]]
) -> SafeString:
    if not names:
        return format_html("{}", "serves no model")
    breaker = _breaker_text(names, breakers)
    colour = "#ba2121" if breaker.startswith("open") else "inherit"
    return format_html(
        '<span style="color: {}">{}</span> · {}', colour, breaker, _rate_text(names, calls)
    )


def deployments_health(groups: dict[Hashable, list[str]]) -> dict[Hashable, SafeString]:
    """Health of each group of deployment names: one Redis round trip, one query."""
    names = sorted({name for group in groups.values() for name in group})
    breakers, calls = _breakers(names), _calls_last_hour(names)
    return {key: _render(sorted(group), breakers, calls) for key, group in groups.items()}


class HealthColumn(admin.ModelAdmin):
    """A ``health`` column computed once for the whole changelist page, not per row."""

    def deployment_names(self, rows: Iterable[Any]) -> dict[Hashable, list[str]]:
        raise NotImplementedError

    def get_changelist_instance(self, request: HttpRequest) -> ChangeList:
        changelist = super().get_changelist_instance(request)
        rows = list(changelist.result_list)  # the page; its queryset keeps these instances
        health = deployments_health(self.deployment_names(rows))
        for row in rows:
            row._health = health[row.pk]
        return changelist

    @admin.display(description="Health")
    def health(self, obj: Any) -> SafeString:
        if not hasattr(obj, "_health"):
            obj._health = deployments_health(self.deployment_names([obj]))[obj.pk]
        health: SafeString = obj._health
        return health


class ProviderEndpointForm(forms.ModelForm):
    base_url = forms.URLField(assume_scheme="https", max_length=200)
    api_key = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Stored encrypted; leave empty to keep the current key.",
    )

    class Meta:
        model = ProviderEndpoint
        fields = ["name", "provider", "base_url", "api_key", "is_default", "is_active"]

    def save(self, commit: bool = True) -> ProviderEndpoint:
        endpoint: ProviderEndpoint = super().save(commit=False)
        if self.cleaned_data.get("api_key"):
            endpoint.api_key_encrypted = crypto.encrypt(self.cleaned_data["api_key"])
        if commit:
            endpoint.save()
        return endpoint


@admin.register(ProviderEndpoint)
class ProviderEndpointAdmin(HealthColumn):
    """Provider credentials: write-only, encrypted at rest, never displayed."""

    form = ProviderEndpointForm
    list_display = [
        "name",
        "provider",
        "base_url",
        "is_default",
        "is_active",
        "has_key",
        "health",
    ]
    list_filter = ["provider", "is_default", "is_active"]
    search_fields = ["name", "base_url"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ProviderEndpoint]:
        direct = LanguageModel.objects.filter(endpoint=OuterRef("pk"))
        endpoints: QuerySet[ProviderEndpoint] = super().get_queryset(request)
        return endpoints.annotate(_serves_models=Exists(direct))

    def deployment_names(self, rows: Iterable[ProviderEndpoint]) -> dict[Hashable, list[str]]:
        """The deployment names an endpoint answers as: its deployments, plus its provider's
        name for models without deployments that it serves (as the default or by choice)."""
        names: dict[Hashable, list[str]] = {
            row.pk: [row.provider]
            if row.is_default or getattr(row, "_serves_models", False)
            else []
            for row in rows
        }
        deployments = ModelDeployment.objects.filter(endpoint__in=names).values_list(
            "endpoint_id", "name"
        )
        for endpoint_id, name in deployments:
            names[endpoint_id].append(name)
        return names

    @admin.display(boolean=True, description="Key set")
    def has_key(self, obj: ProviderEndpoint) -> bool:
        return bool(obj.api_key_encrypted)


@admin.register(ModelDeployment)
class ModelDeploymentAdmin(HealthColumn):
    """A model's ordered fallback list; workers pick changes up within
    ``AQTA_CATALOG_REFRESH_SECONDS``."""

    list_display = [
        "name",
        "model",
        "endpoint",
        "upstream_model_id",
        "priority",
        "is_active",
        "health",
    ]
    list_filter = ["is_active", "endpoint", "model__provider"]
    search_fields = ["name", "upstream_model_id", "model__model_id", "endpoint__name"]
    list_select_related = ["model", "endpoint"]
    ordering = ["model__model_id", "priority", "name"]

    def deployment_names(self, rows: Iterable[ModelDeployment]) -> dict[Hashable, list[str]]:
        return {row.pk: [row.name] for row in rows}


@admin.register(Trace)
class TraceAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "organization",
        "model",
        "provider",
        "status",
        "http_status",
        "error_code",
        "cost_eur",
        "latency_ms",
        "stream",
        "cached",
        "loop_detected",
    ]
    list_filter = ["status", "stream", "cached", "loop_detected", "provider", "http_status"]
    search_fields = ["id", "model", "organization__name", "error_code"]
    list_select_related = ["organization"]
    date_hierarchy = "created_at"

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Trace], search_term: str
    ) -> tuple[QuerySet[Trace], bool]:
        # Ids are shown as tr_<hex>; the database's text form has neither prefix nor dashes.
        parsed = trace_ids.parse(search_term)
        if parsed is not None:
            return queryset.filter(pk=parsed), False
        return super().get_search_results(request, queryset, search_term)


@admin.register(UsageCounter)
class UsageCounterAdmin(ReadOnlyAdmin):
    list_display = ["month", "organization", "api_key", "requests", "completion_tokens", "cost_eur"]
    list_filter = ["month"]
    search_fields = ["organization__name"]
    list_select_related = ["organization", "api_key"]


@admin.register(GatewayEvent)
class GatewayEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "kind", "organization", "trace", "delivered_at"]
    list_filter = ["kind"]
    search_fields = ["organization__name"]
    list_select_related = ["organization"]


@admin.register(TraceDeadLetter)
class TraceDeadLetterAdmin(ReadOnlyAdmin):
    """Trace records the flusher could not store while others could, with the error.

    Replay them once the cause is gone (a stored one leaves the list); deleting one
    discards that call's trace for good. Both are audited.
    """

    list_display = [
        "created_at",
        "source",
        "trace_id",
        "organization_id",
        "short_error",
        "attempts",
        "last_attempt_at",
    ]
    list_filter = ["source"]
    search_fields = ["trace_id", "organization_id", "error"]
    date_hierarchy = "created_at"
    fields = [
        "created_at",
        "source",
        "trace_id",
        "organization_id",
        "attempts",
        "last_attempt_at",
        "error",
        "record",
    ]
    readonly_fields = ["record"]
    actions = ["replay"]

    @admin.display(description="Error")
    def short_error(self, obj: TraceDeadLetter) -> str:
        return obj.error if len(obj.error) <= 120 else obj.error[:119] + "…"

    @admin.display(description="Record as buffered")
    def record(self, obj: TraceDeadLetter) -> SafeString:
        try:
            text = json.dumps(json.loads(obj.payload), indent=2, sort_keys=True)
        except ValueError:
            text = obj.payload  # not JSON: that may be why it is here
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', text)

    @admin.action(description="Replay selected dead letters", permissions=["delete"])
    def replay(self, request: HttpRequest, queryset: QuerySet[TraceDeadLetter]) -> None:
        try:
            stored, failing = dead_letters_replay(
                letters=queryset, actor=operator(request), request=request
            )
        except StorageUnavailable as error:
            self.message_user(request, f"Nothing can be stored right now: {error}", messages.ERROR)
            return
        level = messages.WARNING if failing else messages.SUCCESS
        self.message_user(
            request,
            f"Stored {stored} dead letter(s); {failing} still failing (see their error).",
            level,
        )

    def delete_model(self, request: HttpRequest, obj: TraceDeadLetter) -> None:
        dead_letters_discard(
            letters=TraceDeadLetter.objects.filter(pk=obj.pk),
            actor=operator(request),
            request=request,
        )

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[TraceDeadLetter]) -> None:
        dead_letters_discard(letters=queryset, actor=operator(request), request=request)
