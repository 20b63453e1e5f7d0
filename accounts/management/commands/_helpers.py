from __future__ import annotations

import uuid

from django.core.management.base import CommandError

from accounts.models import ApiKey, Organization


def organization_lookup(value: str) -> Organization:
    """An organisation by id or slug."""
    try:
        return Organization.objects.select_related("tier").get(pk=uuid.UUID(value))
    except (ValueError, Organization.DoesNotExist):
        pass
    try:
        return Organization.objects.select_related("tier").get(slug=value)
    except Organization.DoesNotExist:
        raise CommandError(f"No organisation with id or slug {value!r}.") from None


def api_key_lookup(value: str) -> ApiKey:
    try:
        return ApiKey.objects.select_related("organization").get(pk=uuid.UUID(value))
    except (ValueError, ApiKey.DoesNotExist):
        raise CommandError(f"No API key with id {value!r}.") from None
