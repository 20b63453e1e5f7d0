"""What the accounts API views share: input validation and the caller's organisation."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.views import APIView

from accounts.authentication import KeyPrincipal, request_principal, request_user
from accounts.models import Membership, Organization, User
from accounts.selectors import membership_get

ORGANIZATION_HEADER = "X-Aqta-Organization"
SESSION_ORGANIZATION = "aqta_organization_id"


def validated(serializer_class: type[serializers.Serializer], data: Any) -> dict[str, Any]:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    validated_data: dict[str, Any] = serializer.validated_data
    return validated_data


def current_membership(request: Request) -> Membership:
    org_id = request.headers.get(ORGANIZATION_HEADER) or request.session.get(SESSION_ORGANIZATION)
    return membership_get(user=request_user(request), organization_id=org_id)


class OrganizationScopedApi(APIView):
    """Resolves the caller's organisation: the key's own, or the session user's current one."""

    def organization_context(self, request: Request) -> tuple[Organization, Membership | None]:
        principal = request_principal(request)
        if isinstance(principal, KeyPrincipal):
            return principal.api_key.organization, None
        membership = current_membership(request)
        return membership.organization, membership

    @staticmethod
    def actor(request: Request) -> User | None:
        principal = request_principal(request)
        return None if isinstance(principal, KeyPrincipal) else principal

    @staticmethod
    def actor_label(request: Request) -> str:
        principal = request_principal(request)
        return principal.label if isinstance(principal, KeyPrincipal) else principal.email
