"""Response shapes of the accounts API: organisations, the caller (``me_data``), API keys."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers
from rest_framework.request import Request

from accounts.api.base import current_membership
from accounts.authentication import KeyPrincipal, request_principal
from accounts.models import ApiKey, Organization, User
from accounts.selectors import memberships_for_user


def organization_data(organization: Organization, role: str | None = None) -> dict[str, Any]:
    data = {
        "id": str(organization.pk),
        "name": organization.name,
        "slug": organization.slug,
        "tier": organization.tier.slug,
        "monthly_budget_eur": (
            str(organization.monthly_budget_eur)
            if organization.monthly_budget_eur is not None
            else None
        ),
        "content_logging": organization.content_logging,
    }
    if role is not None:
        data["role"] = role
    return data


def me_data(request: Request) -> dict[str, Any]:
    user = request_principal(request)
    if isinstance(user, KeyPrincipal):
        api_key = user.api_key
        return {
            "user": None,
            "api_key": ApiKeyOutput(api_key).data,
            "organization": organization_data(api_key.organization),
            "organizations": [organization_data(api_key.organization)],
        }
    memberships = list(memberships_for_user(user=user))
    current = current_membership(request) if memberships else None
    return {
        "user": {"id": user.pk, "email": user.email, "name": user.name},
        "api_key": None,
        "organization": (
            organization_data(current.organization, current.role) if current else None
        ),
        "organizations": [organization_data(m.organization, m.role) for m in memberships],
    }


class ApiKeyOutput(serializers.ModelSerializer):
    created_by: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(
        slug_field="email",
        read_only=True,
        allow_null=True,
        help_text="Who created it; null when an API key (or an operator command) did.",
    )
    status = serializers.SerializerMethodField()
    organization = serializers.UUIDField(source="organization_id", read_only=True)

    class Meta:
        model = ApiKey
        fields = [
            "id",
            "name",
            "organization",
            "prefix",
            "last4",
            "status",
            "created_by",
            "created_at",
            "last_used_at",
            "expires_at",
            "revoked_at",
            "rate_limit_per_minute",
            "allowed_models",
            "monthly_budget_eur",
        ]

    @extend_schema_field(serializers.ChoiceField(choices=["active", "revoked", "expired"]))
    def get_status(self, obj: ApiKey) -> str:
        if obj.revoked_at is not None:
            return "revoked"
        return "active" if obj.is_active() else "expired"


@extend_schema_serializer(component_name="ApiKeyCreated")
class ApiKeyCreatedOutput(ApiKeyOutput):
    key = serializers.CharField(help_text="The secret, shown this once.")

    class Meta(ApiKeyOutput.Meta):
        fields = [*ApiKeyOutput.Meta.fields, "key"]


# Shapes of me_data() for the schema (the views build the dicts themselves).
@extend_schema_serializer(component_name="Organization")
class OrganizationOutput(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    slug = serializers.CharField()
    tier = serializers.CharField()
    monthly_budget_eur = serializers.DecimalField(
        max_digits=12, decimal_places=2, allow_null=True, help_text="Null: no budget."
    )
    content_logging = serializers.BooleanField()
    role = serializers.ChoiceField(
        choices=["owner", "admin", "member"], required=False, help_text="Session callers only."
    )


@extend_schema_serializer(component_name="Me")
class MeOutput(serializers.Serializer):
    @extend_schema_serializer(component_name="User")
    class UserOutput(serializers.Serializer):
        id = serializers.IntegerField()
        email = serializers.EmailField()
        name = serializers.CharField(allow_blank=True)

    user = UserOutput(allow_null=True, help_text="Null when called with an API key.")
    api_key = ApiKeyOutput(allow_null=True, help_text="The key, when called with one.")
    organization = OrganizationOutput(allow_null=True, help_text="The current organisation.")
    organizations = OrganizationOutput(many=True)
