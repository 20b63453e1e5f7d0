from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypedDict

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db.models import (
    Aggregate,
    Count,
    DateTimeField,
    DecimalField,
    Field,
    IntegerField,
    Max,
    Model,
    OuterRef,
    PositiveBigIntegerField,
    QuerySet,
    Subquery,
    Sum,
)
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.utils import timezone

from accounts.authentication import request_user
from accounts.key_records import key_records_invalidate
from accounts.models import ApiKey, Membership, Organization, User
from accounts.services import api_key_revoke, organization_change_tier
from aqta.errors import AqtaError
from billing.models import Tier
from compliance.retention import organization_retention_set, retention_days_validate
from compliance.services import audit_event_record
from gateway.models import UsageCounter

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations


class _OrganizationActivity(TypedDict):
    """What ``OrganizationAdmin.get_queryset`` annotates each organisation with."""

    _members: int
    _requests_month: int
    _cost_month: Decimal
    _last_activity: datetime | None


if TYPE_CHECKING:
    OrganizationWithActivity = WithAnnotations[Organization, _OrganizationActivity]
    # An action on the organisation list: (the model admin, the request, the selection).
    OrganizationAction = Callable[
        [admin.ModelAdmin[Organization], HttpRequest, QuerySet[Organization]], None
    ]


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    ordering = ["email"]
    list_display = ["email", "name", "is_staff", "is_active", "date_joined", "last_login"]
    list_filter = ["is_staff", "is_superuser", "is_active"]
    search_fields = ["email", "name"]
    fieldsets = [
        (None, {"fields": ["email", "password"]}),
        ("Profile", {"fields": ["name"]}),
        (
            "Permissions",
            {"fields": ["is_active", "is_staff", "is_superuser", "groups", "user_permissions"]},
        ),
        ("Dates", {"fields": ["last_login", "date_joined"]}),
    ]
    add_fieldsets = [(None, {"classes": ["wide"], "fields": ["email", "password1", "password2"]})]


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


def _change_tier_action(tier: Tier) -> tuple[OrganizationAction, str, str]:
    def action(
        modeladmin: admin.ModelAdmin[Organization],
        request: HttpRequest,
        queryset: QuerySet[Organization],
    ) -> None:
        actor = request_user(request)
        for organization in queryset.select_related("tier"):
            organization_change_tier(organization=organization, tier=tier, actor=actor)
        modeladmin.message_user(
            request, f"Moved {queryset.count()} organisation(s) to {tier.name}.", messages.SUCCESS
        )

    action.__name__ = f"move_to_{tier.slug}"
    return action, action.__name__, f"Change tier to {tier.name}"


def _per_organization(
    queryset: QuerySet[Model], aggregate: Aggregate, output_field: Field[Any, Any]
) -> Subquery:
    """One value per organisation row, as a correlated subquery (no join fan-out, no N+1)."""
    value = (
        queryset.filter(organization=OuterRef("pk"))
        .order_by()
        .values("organization")
        .annotate(value=aggregate)
        .values("value")
    )
    return Subquery(value, output_field=output_field)


def _usage_this_month(field: str, output_field: Field[Any, Any]) -> Coalesce:
    month = timezone.now().date().replace(day=1)  # counters are per calendar month, UTC
    usage = UsageCounter.objects.filter(month=month)
    return Coalesce(
        _per_organization(usage, Sum(field), output_field), 0, output_field=output_field
    )


class OrganizationAdminForm(forms.ModelForm):
    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        tier = data.get("tier")
        if tier is not None and {"tier", "retention_days"} & set(self.changed_data):
            try:
                retention_days_validate(tier=tier, days=data.get("retention_days"))
            except AqtaError as error:
                self.add_error("retention_days", error.message)
        return data


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    form = OrganizationAdminForm
    list_display = [
        "name",
        "slug",
        "tier",
        "requests_this_month",
        "cost_this_month",
        "last_activity",
        "monthly_budget_eur",
        "content_logging",
        "member_count",
        "created_at",
    ]
    list_filter = ["tier", "content_logging", "is_personal"]
    search_fields = ["name", "slug", "memberships__user__email"]
    readonly_fields = ["id", "created_at"]
    inlines = [MembershipInline]
    list_select_related = ["tier"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[OrganizationWithActivity]:
        cost: DecimalField[Decimal, Decimal] = DecimalField(max_digits=18, decimal_places=8)
        organizations: QuerySet[Organization] = super().get_queryset(request)
        return organizations.annotate(
            _members=Coalesce(
                _per_organization(Membership.objects.all(), Count("pk"), IntegerField()), 0
            ),
            _requests_month=_usage_this_month("requests", PositiveBigIntegerField()),
            _cost_month=_usage_this_month("cost_eur", cost),
            _last_activity=_per_organization(
                ApiKey.objects.all(), Max("last_used_at"), DateTimeField()
            ),
        )

    @admin.display(ordering="_members", description="Members")
    def member_count(self, obj: OrganizationWithActivity) -> int:
        return obj._members

    @admin.display(ordering="_requests_month", description="Requests this month")
    def requests_this_month(self, obj: OrganizationWithActivity) -> int:
        return obj._requests_month

    @admin.display(ordering="_cost_month", description="Cost this month (EUR)")
    def cost_this_month(self, obj: OrganizationWithActivity) -> str:
        return f"{Decimal(obj._cost_month):.2f}"

    @admin.display(ordering="_last_activity", description="Last activity", empty_value="never")
    def last_activity(self, obj: OrganizationWithActivity) -> datetime | None:
        return obj._last_activity

    def get_actions(
        self, request: HttpRequest
    ) -> dict[str, tuple[Callable[..., str], str, str] | None]:
        actions = super().get_actions(request)
        if request.user.has_perm("accounts.change_organization"):
            for tier in Tier.objects.all():
                action, name, description = _change_tier_action(tier)
                # The stubs type an action as returning str; Django ignores what it returns.
                actions[name] = (action, name, description)  # type: ignore[assignment]
        return actions

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Organisations are born with an owner (signup, or `manage.py org_create`).
        return False

    def save_model(
        self,
        request: HttpRequest,
        obj: Organization,
        form: forms.ModelForm[Organization],
        change: bool,
    ) -> None:
        # Tier and retention changes go through their services (after the tier, so that
        # retention is checked against the new one); every other change is audited here.
        actor = request_user(request)
        by_service = {"tier", "retention_days"} & set(form.changed_data)
        changed = [name for name in form.changed_data if name not in by_service]
        new_tier, new_retention = obj.tier, obj.retention_days
        if by_service:
            saved = Organization.objects.select_related("tier").get(pk=obj.pk)
            obj.tier, obj.retention_days = saved.tier, saved.retention_days
        super().save_model(request, obj, form, change)
        key_records_invalidate(organization=obj)
        if changed:
            audit_event_record(
                action="organization.updated",
                organization=obj,
                actor=actor,
                target=str(obj.pk),
                data={name: str(form.cleaned_data.get(name)) for name in changed},
            )
        if "tier" in form.changed_data:
            organization_change_tier(organization=obj, tier=new_tier, actor=actor)
        if "retention_days" in form.changed_data:
            organization_retention_set(organization=obj, days=new_retention, actor=actor)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "organization", "role", "created_at"]
    list_filter = ["role"]
    search_fields = ["user__email", "organization__name"]
    autocomplete_fields = ["user", "organization"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are created from the API, the dashboard or ``manage.py apikey_create``: the
    secret can be shown only once, which an admin page cannot guarantee."""

    list_display = [
        "name",
        "masked",
        "organization",
        "created_by",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
    ]
    list_filter = ["organization__tier", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix", "last4", "organization__name", "created_by__email"]
    list_select_related = ["organization", "created_by"]
    exclude = ["digest"]
    # Overrides are validated against the tier when a key is created; operators revoke and
    # re-issue rather than edit them here, where that validation would be bypassed.
    readonly_fields = [
        "id",
        "masked",
        "organization",
        "created_by",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
        "revoked_by",
        "rate_limit_per_minute",
        "allowed_models",
        "monthly_budget_eur",
    ]
    actions = ["revoke_keys"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="Key")
    def masked(self, obj: ApiKey) -> str:
        return obj.masked

    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        revoked = 0
        for api_key in queryset.filter(revoked_at__isnull=True):
            api_key_revoke(api_key=api_key, revoked_by=request_user(request))
            revoked += 1
        self.message_user(request, f"Revoked {revoked} key(s).", messages.SUCCESS)
