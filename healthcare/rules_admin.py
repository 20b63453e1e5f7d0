"""The operators' admin for high-risk rules (registered from ``HealthcareConfig.ready``).

Every write goes through ``healthcare.rules``, as from the API: the pattern is checked in
RE2, names stay unique, the change is audited and the organisation's cached key records
are dropped, so the data plane sees it within a second.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.authentication import request_user
from healthcare.highrisk import pattern_check
from healthcare.models import HighRiskRule
from healthcare.rules import (
    FIELDS,
    MAX_RULES_PER_ORGANIZATION,
    high_risk_rule_create,
    high_risk_rule_delete,
    high_risk_rule_update,
)


class HighRiskRuleForm(forms.ModelForm):
    class Meta:
        model = HighRiskRule
        fields = ["organization", *FIELDS]
        widgets = {"pattern": forms.Textarea(attrs={"rows": 6, "cols": 100})}

    def clean_pattern(self) -> str:
        pattern: str = self.cleaned_data["pattern"]
        problem = pattern_check(pattern)
        if problem is not None:
            raise forms.ValidationError(f"The pattern {problem}.")
        return pattern

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        organization = data.get("organization")
        if self.instance.pk is None and organization is not None:
            count = HighRiskRule.objects.filter(organization=organization).count()
            if count >= MAX_RULES_PER_ORGANIZATION:
                self.add_error(
                    None,
                    f"{organization} has {count} rules already: at most "
                    f"{MAX_RULES_PER_ORGANIZATION}.",
                )
        return data


@admin.register(HighRiskRule)
class HighRiskRuleAdmin(admin.ModelAdmin):
    form = HighRiskRuleForm
    list_display = ["name", "organization", "category", "scope", "action", "enabled", "created_at"]
    list_filter = ["category", "scope", "action", "enabled", "organization__tier"]
    search_fields = ["name", "pattern", "organization__name", "organization__slug"]
    list_select_related = ["organization"]
    autocomplete_fields = ["organization"]
    readonly_fields = ["created_at"]
    actions = ["enable_rules", "disable_rules"]

    def get_readonly_fields(self, request: HttpRequest, obj: HighRiskRule | None = None) -> Any:
        # A rule stays with the organisation it was made for.
        return [*self.readonly_fields, "organization"] if obj is not None else self.readonly_fields

    def save_model(
        self,
        request: HttpRequest,
        obj: HighRiskRule,
        form: forms.ModelForm[HighRiskRule],
        change: bool,
    ) -> None:
        # The form checked what the service checks again (the service also audits and
        # drops the cached key records).
        actor = request_user(request)
        if not change:
            created = high_risk_rule_create(
                organization=obj.organization,
                **{field: form.cleaned_data[field] for field in FIELDS},
                actor=actor,
            )
            obj.pk, obj.created_at = created.pk, created.created_at
            return
        saved = HighRiskRule.objects.select_related("organization").get(pk=obj.pk)
        changes = {field: form.cleaned_data[field] for field in form.changed_data}
        high_risk_rule_update(rule=saved, changes=changes, actor=actor)

    def delete_model(self, request: HttpRequest, obj: HighRiskRule) -> None:
        high_risk_rule_delete(rule=obj, actor=request_user(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[HighRiskRule]) -> None:
        for rule in queryset.select_related("organization"):
            high_risk_rule_delete(rule=rule, actor=request_user(request))

    def _set_enabled(
        self, request: HttpRequest, queryset: QuerySet[HighRiskRule], on: bool
    ) -> None:
        changed = 0
        for rule in queryset.select_related("organization").filter(enabled=not on):
            high_risk_rule_update(rule=rule, changes={"enabled": on}, actor=request_user(request))
            changed += 1
        state = "Enabled" if on else "Disabled"
        self.message_user(request, f"{state} {changed} rule(s).", messages.SUCCESS)

    @admin.action(description="Enable selected rules", permissions=["change"])
    def enable_rules(self, request: HttpRequest, queryset: QuerySet[HighRiskRule]) -> None:
        self._set_enabled(request, queryset, True)

    @admin.action(description="Disable selected rules", permissions=["change"])
    def disable_rules(self, request: HttpRequest, queryset: QuerySet[HighRiskRule]) -> None:
        self._set_enabled(request, queryset, False)
