"""Writes behind the dashboard: organisation settings and memberships.

Every function takes the acting membership and checks it, so a page (or any later caller)
cannot forget the owner/admin rule: members read, owners and admins change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import transaction

from accounts.key_records import key_records_invalidate
from accounts.models import Membership, Organization, Role
from accounts.selectors import user_get_by_email
from aqta.errors import AqtaError, ErrorCode
from billing.models import Tier
from compliance.services import audit_event_record

# Absolute bounds of the loop guard, whatever the tier: below 2 identical calls nothing
# could ever pass twice; beyond an hour the window stops meaning "a runaway loop".
LOOP_THRESHOLD_MIN, LOOP_THRESHOLD_MAX = 2, 1000
LOOP_WINDOW_MIN, LOOP_WINDOW_MAX = 10, 3600

SETTINGS_FIELDS = (
    "name",
    "monthly_budget_eur",
    "content_logging",
    "response_cache",
    "retention_days",
    "loop_guard_threshold",
    "loop_guard_window_seconds",
)


@dataclass(frozen=True)
class LoopGuardLimits:
    threshold_min: int
    threshold_max: int
    window_min: int
    window_max: int


def loop_guard_limits(*, tier: Tier) -> LoopGuardLimits:
    """What an organisation on ``tier`` may choose.

    Tiers without custom limits may only make the guard stricter than the tier's default
    (fewer repeats, a longer window); tiers with custom limits may also relax it.
    """
    if tier.custom_rate_limits:
        return LoopGuardLimits(
            LOOP_THRESHOLD_MIN, LOOP_THRESHOLD_MAX, LOOP_WINDOW_MIN, LOOP_WINDOW_MAX
        )
    return LoopGuardLimits(
        LOOP_THRESHOLD_MIN,
        tier.loop_guard_threshold,
        tier.loop_guard_window_seconds,
        LOOP_WINDOW_MAX,
    )


def _require_manager(actor: Membership, organization: Organization) -> None:
    if actor.organization_id != organization.pk or not actor.can_manage:
        raise AqtaError(
            "Only owners and admins of this organisation can do that.",
            code=ErrorCode.PERMISSION_DENIED,
        )


def _check_range(value: int | None, low: int, high: int, *, param: str, what: str) -> None:
    if value is not None and not low <= value <= high:
        raise AqtaError(f"{what} must be between {low} and {high}.", param=param)


def _validate_settings(organization: Organization, values: dict) -> None:
    tier = organization.tier
    budget = values.get("monthly_budget_eur")
    if budget is not None and budget < 0:
        raise AqtaError("The monthly budget cannot be negative.", param="monthly_budget_eur")
    retention = values.get("retention_days")
    _check_range(
        retention,
        1,
        tier.max_retention_days,
        param="retention_days",
        what=f"Retention on the {tier.name} tier",
    )
    limits = loop_guard_limits(tier=tier)
    _check_range(
        values.get("loop_guard_threshold"),
        limits.threshold_min,
        limits.threshold_max,
        param="loop_guard_threshold",
        what=f"The loop-guard threshold on the {tier.name} tier",
    )
    _check_range(
        values.get("loop_guard_window_seconds"),
        limits.window_min,
        limits.window_max,
        param="loop_guard_window_seconds",
        what=f"The loop-guard window on the {tier.name} tier",
    )


@transaction.atomic
def organization_settings_update(
    *, organization: Organization, actor: Membership, **values: Any
) -> Organization:
    """Change the settings an organisation manages itself (never its tier or quota).

    Empty values (None) mean "the tier's default". The gateway's cached key records are
    dropped, so the new settings apply to the next call.
    """
    _require_manager(actor, organization)
    unknown = set(values) - set(SETTINGS_FIELDS)
    if unknown:
        raise AqtaError(f"Unknown setting(s): {', '.join(sorted(unknown))}.")
    if "name" in values and not (values["name"] or "").strip():
        raise AqtaError("The organisation needs a name.", param="name")
    _validate_settings(organization, values)
    changed = {
        name: value for name, value in values.items() if getattr(organization, name) != value
    }
    if not changed:
        return organization
    for name, value in changed.items():
        setattr(organization, name, value)
    organization.save(update_fields=list(changed))
    key_records_invalidate(organization=organization)
    audit_event_record(
        action="organization.updated",
        organization=organization,
        actor=actor.user,
        target=str(organization.pk),
        data={name: None if value is None else str(value) for name, value in changed.items()},
    )
    return organization


def _owner_count(organization: Organization) -> int:
    return Membership.objects.filter(organization=organization, role=Role.OWNER).count()


def _check_owner_rules(actor: Membership, target_role: str, new_role: str | None) -> None:
    """Only owners grant, change or take away the owner role."""
    if Role.OWNER in {target_role, new_role} and actor.role != Role.OWNER:
        raise AqtaError(
            "Only an owner can grant, change or remove the owner role.",
            code=ErrorCode.PERMISSION_DENIED,
        )


@transaction.atomic
def membership_add(
    *, organization: Organization, actor: Membership, email: str, role: str
) -> Membership:
    """Add an existing Aqta user to the organisation with ``role``."""
    _require_manager(actor, organization)
    if role not in Role.values:
        raise AqtaError(f"Unknown role {role!r}.", param="role")
    _check_owner_rules(actor, Role.MEMBER, role)
    user = user_get_by_email(email=email)
    if user is None:
        raise AqtaError(
            "No Aqta account uses this email address. Ask them to sign up first, "
            "then add them here.",
            code=ErrorCode.USER_NOT_FOUND,
            param="email",
        )
    if Membership.objects.filter(organization=organization, user=user).exists():
        raise AqtaError(
            f"{user.email} is already a member of {organization.name}.",
            code=ErrorCode.ALREADY_A_MEMBER,
            param="email",
        )
    membership = Membership.objects.create(organization=organization, user=user, role=role)
    audit_event_record(
        action="membership.added",
        organization=organization,
        actor=actor.user,
        target=user.email,
        data={"role": role},
    )
    return membership


@transaction.atomic
def membership_change_role(*, membership: Membership, actor: Membership, role: str) -> Membership:
    organization = membership.organization
    _require_manager(actor, organization)
    if role not in Role.values:
        raise AqtaError(f"Unknown role {role!r}.", param="role")
    locked = Membership.objects.select_for_update().get(pk=membership.pk)
    previous = locked.role
    if previous == role:
        return locked
    _check_owner_rules(actor, previous, role)
    if previous == Role.OWNER and _owner_count(organization) <= 1:
        raise AqtaError(
            "The last owner cannot be demoted; make someone else owner first.",
            code=ErrorCode.LAST_OWNER,
            param="role",
        )
    locked.role = role
    locked.save(update_fields=["role"])
    audit_event_record(
        action="membership.role_changed",
        organization=organization,
        actor=actor.user,
        target=locked.user.email,
        data={"from": previous, "to": role},
    )
    return locked


@transaction.atomic
def membership_remove(*, membership: Membership, actor: Membership) -> None:
    organization = membership.organization
    _require_manager(actor, organization)
    locked = Membership.objects.select_for_update().get(pk=membership.pk)
    _check_owner_rules(actor, locked.role, None)
    if locked.role == Role.OWNER and _owner_count(organization) <= 1:
        raise AqtaError(
            "The last owner cannot be removed; make someone else owner first.",
            code=ErrorCode.LAST_OWNER,
        )
    email = locked.user.email
    locked.delete()
    audit_event_record(
        action="membership.removed",
        organization=organization,
        actor=actor.user,
        target=email,
        data={"role": locked.role},
    )
