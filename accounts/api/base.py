"""What the accounts API views share: input validation and the caller's organisation."""

from __future__ import annotations

from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.views import APIView

from accounts.authentication import KeyPrincipal
from accounts.models import Membership, Organization
from accounts.selectors import membership_get

ORGANIZATION_HEADER = "X-Aqta-Organization"
SESSION_ORGANIZATION = "aqta_organization_id"


def validated(serializer_class: type[serializers.Serializer], data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def current_membership(request: Request) -> Membership:
    org_id = request.headers.get(ORGANIZATION_HEADER) or request.session.get(SESSION_ORGANIZATION)
    return membership_get(user=request.user, organization_id=org_id)


class OrganizationScopedApi(APIView):
    """Resolves the caller's organisation: the key's own, or the session user's current one."""

    def organization_context(self, request: Request) -> tuple[Organization, Membership | None]:
        if isinstance(request.user, KeyPrincipal):
            return request.user.api_key.organization, None
        membership = current_membership(request)
        return membership.organization, membership

    @staticmethod
    def actor(request: Request):
        return None if isinstance(request.user, KeyPrincipal) else request.user

    @staticmethod
    def actor_label(request: Request) -> str:
        user = request.user
        return user.label if isinstance(user, KeyPrincipal) else user.email
