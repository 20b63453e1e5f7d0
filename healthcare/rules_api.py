"""/api/health/high-risk-rules: list, create, read, change and delete an organisation's
high-risk rules (docs/high-risk.md).

Healthcare tier only (``healthcare.access.receipts_require``: 403
``tier_feature_unavailable`` elsewhere). Members read; owners and admins write, and so does
an API key of the organisation (as with ``/api/keys``). Thin views over
``healthcare.rules``, which checks, audits and invalidates the cached key records.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_serializer,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.base import OrganizationScopedApi, validated
from accounts.models import Membership, Organization
from aqta.errors import AqtaError, ErrorCode
from aqta.openapi import ORGANIZATION_PARAMETER, error_responses
from healthcare.access import receipts_require
from healthcare.highrisk import MAX_PATTERN_CHARS, pattern_check
from healthcare.models import HighRiskRule, RuleAction, RuleCategory, RuleScope
from healthcare.rules import (
    MAX_RULES_PER_ORGANIZATION,
    NAME_MAX_LENGTH,
    high_risk_rule_create,
    high_risk_rule_delete,
    high_risk_rule_get,
    high_risk_rule_list,
    high_risk_rule_update,
)

TAGS = ["healthcare"]
PATTERN_HELP = (
    "Terms separated by `|` (whole words, any case, any whitespace between words), or, "
    "when it uses any other regular-expression syntax, an RE2 regular expression "
    f"(case-insensitive; no look-around or backreferences). At most {MAX_PATTERN_CHARS} "
    "characters."
)
S403 = (
    "`tier_feature_unavailable` (not the Healthcare tier), `permission_denied` (members "
    "only read), `csrf_failed`."
)
RULE_ID = OpenApiParameter(
    "rule_id", OpenApiTypes.INT, location=OpenApiParameter.PATH, description="The rule's id."
)


@extend_schema_serializer(component_name="HighRiskRule")
class HighRiskRuleOutput(serializers.ModelSerializer):
    class Meta:
        model = HighRiskRule
        fields = ["id", "name", "category", "pattern", "scope", "action", "enabled", "created_at"]


@extend_schema_serializer(component_name="HighRiskRuleInput")
class HighRiskRuleInput(serializers.Serializer):
    name = serializers.CharField(
        max_length=NAME_MAX_LENGTH, help_text="Unique in the organisation."
    )
    category = serializers.ChoiceField(choices=RuleCategory.choices)
    pattern = serializers.CharField(
        max_length=MAX_PATTERN_CHARS, trim_whitespace=False, help_text=PATTERN_HELP
    )
    scope = serializers.ChoiceField(
        choices=RuleScope.choices,
        default=RuleScope.BOTH,
        help_text="Which side of a call is read: the request, the answer, or both.",
    )
    action = serializers.ChoiceField(
        choices=RuleAction.choices,
        default=RuleAction.FLAG,
        help_text="`flag` marks the trace and receipt as high-risk; `block` also refuses the "
        "call, on the request side only (an answer-side match can only flag: the provider "
        "was already called).",
    )
    enabled = serializers.BooleanField(default=True)

    def validate_pattern(self, value: str) -> str:
        problem = pattern_check(value)
        if problem is not None:
            raise serializers.ValidationError(f"The pattern {problem}.")
        return value


def _validated_changes(data: Any) -> dict[str, Any]:
    serializer = HighRiskRuleInput(data=data, partial=True)
    serializer.is_valid(raise_exception=True)
    changes: dict[str, Any] = serializer.validated_data
    return changes


class HighRiskRulesApi(OrganizationScopedApi):
    """The caller's organisation, once its tier is known to have the feature."""

    organization: Organization
    membership: Membership | None

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        self.organization, self.membership = self.organization_context(request)
        receipts_require(self.organization)

    def require_manager(self) -> None:
        if self.membership is not None and not self.membership.can_manage:
            raise AqtaError(
                "Only owners and admins can change high-risk rules; members can read them.",
                code=ErrorCode.PERMISSION_DENIED,
            )

    def audit_actor(self, request: Request) -> dict[str, Any]:
        return {"actor": self.actor(request), "actor_label": self.actor_label(request)}


class HighRiskRuleListCreateApi(HighRiskRulesApi):
    @extend_schema(
        operation_id="high_risk_rules_list",
        tags=TAGS,
        summary="The organisation's high-risk rules",
        parameters=[ORGANIZATION_PARAMETER],
        responses={
            200: inline_serializer(
                "HighRiskRuleList",
                {"object": serializers.CharField(), "data": HighRiskRuleOutput(many=True)},
            ),
            **error_responses(401, 403, 404, s403="`tier_feature_unavailable`."),
        },
    )
    def get(self, request: Request) -> Response:
        rules = high_risk_rule_list(organization=self.organization)
        return Response({"object": "list", "data": HighRiskRuleOutput(rules, many=True).data})

    @extend_schema(
        operation_id="high_risk_rules_create",
        tags=TAGS,
        summary="Add a high-risk rule",
        description=f"At most {MAX_RULES_PER_ORGANIZATION} rules per organisation. The data "
        "plane uses the new rule within a second.",
        request=HighRiskRuleInput,
        parameters=[ORGANIZATION_PARAMETER],
        responses={
            201: HighRiskRuleOutput,
            **error_responses(400, 401, 403, 404, 415, s403=S403),
        },
    )
    def post(self, request: Request) -> Response:
        self.require_manager()
        data = validated(HighRiskRuleInput, request.data)
        rule = high_risk_rule_create(
            organization=self.organization, **data, **self.audit_actor(request)
        )
        return Response(HighRiskRuleOutput(rule).data, status=status.HTTP_201_CREATED)


class HighRiskRuleDetailApi(HighRiskRulesApi):
    @extend_schema(
        operation_id="high_risk_rules_retrieve",
        tags=TAGS,
        parameters=[RULE_ID, ORGANIZATION_PARAMETER],
        responses={
            200: HighRiskRuleOutput,
            **error_responses(401, 403, 404, s403="`tier_feature_unavailable`."),
        },
    )
    def get(self, request: Request, rule_id: str) -> Response:
        rule = high_risk_rule_get(organization=self.organization, rule_id=rule_id)
        return Response(HighRiskRuleOutput(rule).data)

    @extend_schema(
        operation_id="high_risk_rules_update",
        tags=TAGS,
        summary="Change a high-risk rule",
        description="Any of the fields; the others stay as they are.",
        request=HighRiskRuleInput(partial=True),
        parameters=[RULE_ID, ORGANIZATION_PARAMETER],
        responses={
            200: HighRiskRuleOutput,
            **error_responses(400, 401, 403, 404, 415, s403=S403),
        },
    )
    def patch(self, request: Request, rule_id: str) -> Response:
        self.require_manager()
        rule = high_risk_rule_get(organization=self.organization, rule_id=rule_id)
        changes = _validated_changes(request.data)
        rule = high_risk_rule_update(rule=rule, changes=changes, **self.audit_actor(request))
        return Response(HighRiskRuleOutput(rule).data)

    @extend_schema(
        operation_id="high_risk_rules_delete",
        tags=TAGS,
        summary="Delete a high-risk rule",
        parameters=[RULE_ID, ORGANIZATION_PARAMETER],
        responses={
            204: OpenApiResponse(description="Deleted."),
            **error_responses(401, 403, 404, s403=S403),
        },
    )
    def delete(self, request: Request, rule_id: str) -> Response:
        self.require_manager()
        rule = high_risk_rule_get(organization=self.organization, rule_id=rule_id)
        high_risk_rule_delete(rule=rule, **self.audit_actor(request))
        return Response(status=status.HTTP_204_NO_CONTENT)
