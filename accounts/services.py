"""Writes for accounts: organisations, memberships, API keys."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from accounts import keys
from accounts.key_records import key_records_invalidate
from accounts.models import ApiKey, Membership, Organization, Role, User
from aqta.errors import AqtaError, ErrorCode
from billing.models import Tier
from billing.selectors import model_ids_known, tier_get
from compliance.services import audit_event_record
from healthcare.rules import high_risk_rules_seed


def _unique_slug(name: str) -> str:
    base = slugify(name)[:120] or "org"
    slug, n = base, 1
    while Organization.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


@transaction.atomic
def organization_create(
    *,
    name: str,
    owner: User,
    tier: Tier | None = None,
    is_personal: bool = False,
    actor: User | None = None,
    actor_label: str = "",
) -> Organization:
    organization = Organization.objects.create(
        name=name,
        slug=_unique_slug(name),
        tier=tier or tier_get(slug=settings.AQTA_DEFAULT_TIER),
        is_personal=is_personal,
    )
    Membership.objects.create(organization=organization, user=owner, role=Role.OWNER)
    audit_event_record(
        action="organization.created",
        organization=organization,
        actor=actor or (None if actor_label else owner),
        actor_label=actor_label,
        target=str(organization.pk),
        data={"name": name, "tier": organization.tier.slug},
    )
    if organization.tier.receipts:
        high_risk_rules_seed(
            organization=organization,
            actor=actor or (None if actor_label else owner),
            actor_label=actor_label,
        )
    return organization


def organization_create_personal(*, user: User) -> Organization:
    """Every new user gets an organisation of their own, on the default tier."""
    label = user.name or user.email.split("@")[0]
    return organization_create(name=f"{label}'s organisation", owner=user, is_personal=True)


@transaction.atomic
def organization_change_tier(
    *, organization: Organization, tier: Tier, actor: User | None = None, actor_label: str = ""
) -> Organization:
    previous = organization.tier
    if previous.pk == tier.pk:
        return organization
    organization.tier = tier
    organization.save(update_fields=["tier"])
    key_records_invalidate(organization=organization)
    audit_event_record(
        action="organization.tier_changed",
        organization=organization,
        actor=actor,
        actor_label=actor_label,
        target=str(organization.pk),
        data={"from": previous.slug, "to": tier.slug},
    )
    if tier.receipts and not previous.receipts:
        high_risk_rules_seed(organization=organization, actor=actor, actor_label=actor_label)
    return organization


def _validate_key_overrides(
    *,
    organization: Organization,
    rate_limit_per_minute: int | None,
    allowed_models: list[str],
    monthly_budget_eur: Decimal | None,
) -> None:
    tier = organization.tier
    ceiling = organization.rate_limit_per_minute or tier.rate_limit_per_minute
    if rate_limit_per_minute is not None:
        if rate_limit_per_minute < 1:
            raise AqtaError(
                "rate_limit_per_minute must be at least 1.", param="rate_limit_per_minute"
            )
        if rate_limit_per_minute > ceiling and not tier.custom_rate_limits:
            raise AqtaError(
                f"The {tier.name} tier allows at most {ceiling} requests/minute per key; "
                "custom rate limits need the Pro tier or above.",
                code=ErrorCode.TIER_FEATURE_UNAVAILABLE,
                param="rate_limit_per_minute",
            )
    unknown = sorted(set(allowed_models) - model_ids_known(model_ids=allowed_models))
    if unknown:
        raise AqtaError(
            f"Unknown model(s) in allowed_models: {', '.join(unknown)}.", param="allowed_models"
        )
    if monthly_budget_eur is not None and monthly_budget_eur < 0:
        raise AqtaError("monthly_budget_eur cannot be negative.", param="monthly_budget_eur")


@transaction.atomic
def api_key_create(
    *,
    organization: Organization,
    created_by: User | None,
    name: str,
    expires_at: datetime | None = None,
    rate_limit_per_minute: int | None = None,
    allowed_models: list[str] | None = None,
    monthly_budget_eur: Decimal | None = None,
    actor_label: str = "",
) -> tuple[ApiKey, str]:
    """Create a key and return it with its secret, which exists nowhere else afterwards."""
    allowed_models = sorted(set(allowed_models or []))
    _validate_key_overrides(
        organization=organization,
        rate_limit_per_minute=rate_limit_per_minute,
        allowed_models=allowed_models,
        monthly_budget_eur=monthly_budget_eur,
    )
    if expires_at is not None and expires_at <= timezone.now():
        raise AqtaError("expires_at must be in the future.", param="expires_at")
    secret = keys.generate()
    prefix, last4 = keys.display_parts(secret)
    api_key = ApiKey.objects.create(
        organization=organization,
        name=name,
        created_by=created_by,
        digest=keys.digest(secret),
        prefix=prefix,
        last4=last4,
        expires_at=expires_at,
        rate_limit_per_minute=rate_limit_per_minute,
        allowed_models=allowed_models,
        monthly_budget_eur=monthly_budget_eur,
    )
    audit_event_record(
        action="api_key.created",
        organization=organization,
        actor=created_by,
        actor_label=actor_label,
        target=str(api_key.pk),
        data={"name": name, "key": api_key.masked},
    )
    return api_key, secret


@transaction.atomic
def api_key_revoke(
    *, api_key: ApiKey, revoked_by: User | None = None, actor_label: str = ""
) -> ApiKey:
    """Revoke a key (idempotent). Look-ups go to the database, so it stops at once."""
    locked = ApiKey.objects.select_for_update().get(pk=api_key.pk)
    if locked.revoked_at is not None:
        # Sent again: the first revocation may have found Redis unavailable.
        key_records_invalidate(api_key=locked)
        return locked
    locked.revoked_at = timezone.now()
    locked.revoked_by = revoked_by if getattr(revoked_by, "pk", None) else None
    locked.save(update_fields=["revoked_at", "revoked_by"])
    key_records_invalidate(api_key=locked)
    audit_event_record(
        action="api_key.revoked",
        organization=locked.organization,
        actor=revoked_by,
        actor_label=actor_label,
        target=str(locked.pk),
        data={"name": locked.name, "key": locked.masked},
    )
    return locked


def api_key_touch(*, api_key: ApiKey, now: datetime | None = None) -> None:
    """Record use, at most once per AQTA_KEY_TOUCH_INTERVAL_SECONDS per key."""
    now = now or timezone.now()
    interval = settings.AQTA_KEY_TOUCH_INTERVAL_SECONDS
    last = api_key.last_used_at
    if last is not None and (now - last).total_seconds() < interval:
        return
    ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
    api_key.last_used_at = now
