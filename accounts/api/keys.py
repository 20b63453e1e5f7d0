"""/api/keys: list, create, retrieve and revoke the organisation's API keys."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.api.base import OrganizationScopedApi, validated
from accounts.api.serializers import ApiKeyCreatedOutput, ApiKeyOutput
from accounts.selectors import api_key_get, api_key_list
from accounts.services import api_key_create, api_key_revoke
from accounts.throttling import throttle
from aqta.errors import AqtaError, ErrorCode
from aqta.openapi import ORGANIZATION_PARAMETER, error_responses


class ApiKeyListCreateApi(OrganizationScopedApi):
    class Input(serializers.Serializer):
        class Meta:
            ref_name = "ApiKeyCreateInput"

        name = serializers.CharField(max_length=100)
        expires_at = serializers.DateTimeField(required=False, allow_null=True)
        rate_limit_per_minute = serializers.IntegerField(
            required=False, allow_null=True, min_value=1, max_value=10_000_000
        )
        allowed_models = serializers.ListField(
            child=serializers.CharField(max_length=120), required=False, max_length=200
        )
        monthly_budget_eur = serializers.DecimalField(
            max_digits=12, decimal_places=2, min_value=0, required=False, allow_null=True
        )

    @extend_schema(
        operation_id="keys_list",
        parameters=[ORGANIZATION_PARAMETER],
        responses={
            200: inline_serializer(
                "ApiKeyList",
                {"object": serializers.CharField(), "data": ApiKeyOutput(many=True)},
            ),
            **error_responses(401, 404),
        },
    )
    def get(self, request: Request) -> Response:
        organization, _ = self.organization_context(request)
        keys = api_key_list(organization=organization)
        return Response({"object": "list", "data": ApiKeyOutput(keys, many=True).data})

    @extend_schema(
        operation_id="keys_create",
        request=Input,
        parameters=[ORGANIZATION_PARAMETER],
        responses={
            201: ApiKeyCreatedOutput,
            **error_responses(
                400,
                401,
                403,
                404,
                415,
                429,
                s403="`tier_feature_unavailable` (a rate limit above the tier's), `csrf_failed`.",
            ),
        },
        description="The response's `key` field is the secret, shown this once.",
    )
    def post(self, request: Request) -> Response:
        organization, _ = self.organization_context(request)
        throttle(
            request,
            group="api-key-create",
            rate=settings.AQTA_KEY_CREATE_RATE,
            key=lambda group, req: str(organization.pk),
        )
        data = validated(self.Input, request.data)
        api_key, secret = api_key_create(
            organization=organization,
            created_by=self.actor(request),
            actor_label=self.actor_label(request),
            **data,
        )
        body = ApiKeyOutput(api_key).data
        body["key"] = secret
        return Response(body, status=status.HTTP_201_CREATED, headers={"Cache-Control": "no-store"})


class ApiKeyDetailApi(OrganizationScopedApi):
    @extend_schema(
        operation_id="keys_retrieve",
        parameters=[ORGANIZATION_PARAMETER],
        responses={200: ApiKeyOutput, **error_responses(401, 404)},
    )
    def get(self, request: Request, key_id: str) -> Response:
        organization, _ = self.organization_context(request)
        return Response(ApiKeyOutput(api_key_get(organization=organization, key_id=key_id)).data)

    @extend_schema(
        operation_id="keys_revoke",
        parameters=[ORGANIZATION_PARAMETER],
        responses={
            200: ApiKeyOutput,
            **error_responses(
                401,
                403,
                404,
                s403="`permission_denied` (members revoke only their own keys), `csrf_failed`.",
            ),
        },
    )
    def delete(self, request: Request, key_id: str) -> Response:
        organization, membership = self.organization_context(request)
        api_key = api_key_get(organization=organization, key_id=key_id)
        if (
            membership is not None
            and not membership.can_manage
            and api_key.created_by_id != request.user.pk
        ):
            raise AqtaError(
                "Members can revoke only the keys they created; ask an owner or admin.",
                code=ErrorCode.PERMISSION_DENIED,
            )
        api_key = api_key_revoke(
            api_key=api_key, revoked_by=self.actor(request), actor_label=self.actor_label(request)
        )
        return Response(ApiKeyOutput(api_key).data)
