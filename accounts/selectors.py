"""Reads for accounts. Everything a caller can reach is scoped to an organisation."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet
from django.utils import timezone

from accounts import keys
from accounts.models import ApiKey, Membership, Organization, User
from aqta.errors import not_found


def api_key_get_by_secret(*, secret: str) -> ApiKey | None:
    """The active key for a presented secret, looked up by digest (never by scanning)."""
    if not keys.is_well_formed(secret):
        return None
    api_key = (
        ApiKey.objects.select_related("organization__tier")
        .filter(digest=keys.digest(secret))
        .first()
    )
    if api_key is None or not api_key.is_active(timezone.now()):
        return None
    return api_key


def api_key_list(*, organization: Organization) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(organization=organization).select_related("created_by")


def api_key_get(*, organization: Organization, key_id: str | uuid.UUID) -> ApiKey:
    """A key of ``organization``; any other id (another org's, malformed) is a 404."""
    try:
        pk = uuid.UUID(str(key_id))
    except ValueError:
        raise not_found("No such API key.") from None
    api_key = api_key_list(organization=organization).filter(pk=pk).first()
    if api_key is None:
        raise not_found("No such API key.")
    return api_key


def memberships_for_user(*, user: User) -> QuerySet[Membership]:
    return (
        Membership.objects.filter(user=user)
        .select_related("organization__tier")
        .order_by("created_at")
    )


def membership_get(*, user: User, organization_id: str | None) -> Membership:
    """The user's membership in ``organization_id``, or their first one when None.

    Asking for an organisation the user is not a member of is a 404, like any other
    object of another organisation.
    """
    memberships = memberships_for_user(user=user)
    if organization_id:
        try:
            pk = uuid.UUID(str(organization_id))
        except ValueError:
            raise not_found("No such organisation.") from None
        memberships = memberships.filter(organization_id=pk)
    membership = memberships.first()
    if membership is None:
        raise not_found("No such organisation.")
    return membership


def user_get_by_email(*, email: str) -> User | None:
    return User.objects.filter(email__iexact=email.strip()).first()
