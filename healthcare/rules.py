"""Reads and writes of an organisation's high-risk rules (docs/high-risk.md).

Every write is checked here (the API and the admin both come through), recorded in the
audit log, and drops the organisation's cached key records once it commits, so the data
plane sees the new rules within a second (``accounts.key_records``).
"""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import QuerySet

from accounts.key_records import key_records_invalidate
from accounts.models import Organization, User
from aqta.errors import AqtaError, ErrorCode, not_found
from compliance.services import audit_event_record
from healthcare.highrisk import pattern_check
from healthcare.highrisk_defaults import DEFAULT_RULES
from healthcare.models import HighRiskRule, RuleAction, RuleCategory, RuleScope

MAX_RULES_PER_ORGANIZATION = 100
FIELDS = ("name", "category", "pattern", "scope", "action", "enabled")
_CHOICES = {"category": RuleCategory, "scope": RuleScope, "action": RuleAction}
NAME_MAX_LENGTH: int = HighRiskRule._meta.get_field("name").max_length or 80


def high_risk_rule_list(*, organization: Organization) -> QuerySet[HighRiskRule]:
    return HighRiskRule.objects.filter(organization=organization).order_by("name", "id")


def high_risk_rule_get(*, organization: Organization, rule_id: object) -> HighRiskRule:
    """A rule of ``organization``; any other id (another organisation's, malformed, out of
    range) is a 404."""
    text = str(rule_id)
    if not (text.isascii() and text.isdigit() and len(text) <= 18):
        raise not_found("No such high-risk rule.")
    rule = high_risk_rule_list(organization=organization).filter(pk=int(text)).first()
    if rule is None:
        raise not_found("No such high-risk rule.")
    return rule


def _rule_data(rule: HighRiskRule) -> dict[str, Any]:
    return {field: getattr(rule, field) for field in FIELDS}


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not name.strip() or "\x00" in name:
        raise AqtaError("name must be a non-empty text without NUL characters.", param="name")
    if len(name) > NAME_MAX_LENGTH:
        raise AqtaError(f"name is longer than {NAME_MAX_LENGTH} characters.", param="name")


def _check_fields(values: dict[str, Any]) -> None:
    """Raise a 400 naming the first field that cannot be stored."""
    if "name" in values:
        _check_name(values["name"])
    for field, choices in _CHOICES.items():
        if field in values and values[field] not in choices.values:
            allowed = ", ".join(choices.values)
            raise AqtaError(f"{field} must be one of: {allowed}.", param=field)
    if "enabled" in values and not isinstance(values["enabled"], bool):
        raise AqtaError("enabled must be true or false.", param="enabled")
    if "pattern" in values:
        problem = pattern_check(values["pattern"])
        if problem is not None:
            raise AqtaError(f"The pattern {problem}.", param="pattern")


def _name_taken(name: str) -> AqtaError:
    return AqtaError(f"A high-risk rule named {name!r} already exists.", param="name")


def _check_name_free(organization: Organization, name: str, exclude: int | None = None) -> None:
    taken = HighRiskRule.objects.filter(organization=organization, name=name)
    if exclude is not None:
        taken = taken.exclude(pk=exclude)
    if taken.exists():
        raise _name_taken(name)


def _save(rule: HighRiskRule) -> None:
    """Save, turning a concurrent duplicate name into the same 400 as a checked one."""
    try:
        with transaction.atomic():
            rule.save()
    except IntegrityError:
        raise _name_taken(rule.name) from None


def _changed(organization: Organization) -> None:
    key_records_invalidate(organization=organization)


@transaction.atomic
def high_risk_rule_create(
    *,
    organization: Organization,
    name: str,
    category: str,
    pattern: str,
    scope: str = RuleScope.BOTH,
    action: str = RuleAction.FLAG,
    enabled: bool = True,
    actor: User | None = None,
    actor_label: str = "",
) -> HighRiskRule:
    values: dict[str, Any] = {
        "name": name.strip(),
        "category": category,
        "pattern": pattern,
        "scope": scope,
        "action": action,
        "enabled": enabled,
    }
    _check_fields(values)
    # Locks the organisation row: concurrent creations count one after the other.
    Organization.objects.select_for_update().filter(pk=organization.pk).first()
    if high_risk_rule_list(organization=organization).count() >= MAX_RULES_PER_ORGANIZATION:
        raise AqtaError(
            f"An organisation has at most {MAX_RULES_PER_ORGANIZATION} high-risk rules; "
            "delete or edit one instead.",
            code=ErrorCode.INVALID_REQUEST,
        )
    _check_name_free(organization, values["name"])
    rule = HighRiskRule(organization=organization, **values)
    _save(rule)
    _changed(organization)
    audit_event_record(
        action="high_risk_rule.created",
        organization=organization,
        actor=actor,
        actor_label=actor_label,
        target=str(rule.pk),
        data=_rule_data(rule),
    )
    return rule


@transaction.atomic
def high_risk_rule_update(
    *,
    rule: HighRiskRule,
    changes: dict[str, Any],
    actor: User | None = None,
    actor_label: str = "",
) -> HighRiskRule:
    """Apply ``changes`` (any of FIELDS); nothing is written or recorded when nothing
    changes."""
    unknown = sorted(set(changes) - set(FIELDS))
    if unknown:
        raise AqtaError(f"{unknown[0]} cannot be changed.", param=unknown[0])
    if isinstance(changes.get("name"), str):
        changes = {**changes, "name": changes["name"].strip()}
    _check_fields(changes)
    before = _rule_data(rule)
    diff = {field: value for field, value in changes.items() if before[field] != value}
    if not diff:
        return rule
    if "name" in diff:
        _check_name_free(rule.organization, diff["name"], exclude=rule.pk)
    for field, value in diff.items():
        setattr(rule, field, value)
    _save(rule)
    _changed(rule.organization)
    audit_event_record(
        action="high_risk_rule.updated",
        organization=rule.organization,
        actor=actor,
        actor_label=actor_label,
        target=str(rule.pk),
        data={
            "name": rule.name,
            "changes": {
                field: {"from": before[field], "to": value} for field, value in diff.items()
            },
        },
    )
    return rule


@transaction.atomic
def high_risk_rule_delete(
    *, rule: HighRiskRule, actor: User | None = None, actor_label: str = ""
) -> None:
    organization, target, data = rule.organization, str(rule.pk), _rule_data(rule)
    rule.delete()
    _changed(organization)
    audit_event_record(
        action="high_risk_rule.deleted",
        organization=organization,
        actor=actor,
        actor_label=actor_label,
        target=target,
        data=data,
    )


@transaction.atomic
def high_risk_rules_seed(
    *, organization: Organization, actor: User | None = None, actor_label: str = ""
) -> int:
    """Give an organisation without any rule the default set (DEFAULT_RULES); the number
    created. An organisation that has rules, its own or the defaults it kept or edited,
    keeps them as they are: seeding never brings back a rule that was deleted on purpose,
    unless every rule was."""
    Organization.objects.select_for_update().filter(pk=organization.pk).first()
    if high_risk_rule_list(organization=organization).exists():
        return 0
    HighRiskRule.objects.bulk_create(
        HighRiskRule(
            organization=organization,
            name=name,
            category=category,
            pattern=pattern,
            scope=scope,
            action=action,
        )
        for name, category, pattern, scope, action in DEFAULT_RULES
    )
    _changed(organization)
    audit_event_record(
        action="high_risk_rules.seeded",
        organization=organization,
        actor=actor,
        actor_label=actor_label,
        target=str(organization.pk),
        data={"rules": [rule[0] for rule in DEFAULT_RULES]},
    )
    return len(DEFAULT_RULES)
