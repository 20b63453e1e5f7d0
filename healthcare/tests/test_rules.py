"""High-risk rules as stored: seeding, the checks of every write, the audit log, and the
cached key records each change drops."""

from __future__ import annotations

import importlib
from io import StringIO

import pytest
from django.apps import apps as django_apps
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts import key_records
from accounts.key_records import REDIS_PREFIX, key_record_build
from accounts.models import ApiKey, User
from accounts.services import api_key_create, organization_change_tier, organization_create
from accounts.tests.factories import UserFactory
from aqta import redis as aqta_redis
from aqta.errors import AqtaError, ErrorCode
from billing.selectors import tier_get
from compliance.models import AuditEvent
from healthcare.highrisk_defaults import DEFAULT_RULES
from healthcare.models import HighRiskRule
from healthcare.rules import (
    MAX_RULES_PER_ORGANIZATION,
    high_risk_rule_create,
    high_risk_rule_delete,
    high_risk_rule_get,
    high_risk_rule_update,
    high_risk_rules_seed,
)

pytestmark = pytest.mark.django_db

DEFAULT_NAMES = sorted(rule[0] for rule in DEFAULT_RULES)


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    # Users are made by the dozen here and never sign in: hash their passwords cheaply.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def rule_names(organization) -> list[str]:
    return sorted(
        HighRiskRule.objects.filter(organization=organization).values_list("name", flat=True)
    )


def first_rule(organization) -> HighRiskRule:
    return HighRiskRule.objects.filter(organization=organization).order_by("name")[0]


def on_tier(slug: str, name: str = "Clinic"):
    owner: User = UserFactory.create()
    return organization_create(name=name, owner=owner, tier=tier_get(slug=slug))


@pytest.fixture
def clinic():
    return on_tier("healthcare")


# --- seeding ----------------------------------------------------------------------------


@pytest.mark.parametrize("slug", ["healthcare", "enterprise"])
def test_an_organisation_created_on_a_tier_with_receipts_gets_the_defaults(slug):
    organization = on_tier(slug)
    assert rule_names(organization) == DEFAULT_NAMES
    stored = {
        (r.name, r.category, r.pattern, r.scope, r.action)
        for r in HighRiskRule.objects.filter(organization=organization)
    }
    assert stored == set(DEFAULT_RULES)
    event = AuditEvent.objects.get(action="high_risk_rules.seeded", organization=organization)
    assert event.data == {"rules": [rule[0] for rule in DEFAULT_RULES]}


@pytest.mark.parametrize("slug", ["free", "starter", "pro"])
def test_other_tiers_get_no_rules(slug):
    assert rule_names(on_tier(slug)) == []


def test_moving_to_a_tier_with_receipts_seeds_the_defaults(org):
    assert rule_names(org) == []
    organization_change_tier(organization=org, tier=tier_get(slug="healthcare"), actor_label="cli")
    assert rule_names(org) == DEFAULT_NAMES
    assert AuditEvent.objects.get(action="high_risk_rules.seeded").actor_label == "cli"


def test_moving_between_tiers_with_receipts_seeds_nothing_again(clinic):
    rule = first_rule(clinic)
    high_risk_rule_delete(rule=rule)
    organization_change_tier(organization=clinic, tier=tier_get(slug="enterprise"))
    assert len(rule_names(clinic)) == len(DEFAULT_RULES) - 1


def test_an_organisation_with_rules_of_its_own_keeps_them_when_it_moves(org):
    high_risk_rule_create(organization=org, name="mine", category="other", pattern="x")
    organization_change_tier(organization=org, tier=tier_get(slug="pro"))  # no change
    organization_change_tier(organization=org, tier=tier_get(slug="healthcare"))
    assert rule_names(org) == ["mine"]


def test_seeding_twice_creates_nothing_the_second_time(org):
    assert high_risk_rules_seed(organization=org) == len(DEFAULT_RULES)
    assert high_risk_rules_seed(organization=org) == 0
    assert len(rule_names(org)) == len(DEFAULT_RULES)
    assert AuditEvent.objects.filter(action="high_risk_rules.seeded").count() == 1


def test_leaving_the_tier_keeps_the_rules_but_the_data_plane_stops_using_them(clinic):
    key, _ = api_key_create(organization=clinic, created_by=None, name="k")
    assert len(key_record_build(key).high_risk_rules) == len(DEFAULT_RULES)
    organization_change_tier(organization=clinic, tier=tier_get(slug="pro"))
    key = ApiKey.objects.select_related("organization__tier").get(pk=key.pk)
    assert key_record_build(key).high_risk_rules == ()
    assert len(rule_names(clinic)) == len(DEFAULT_RULES)


def test_the_key_record_carries_the_enabled_rules(clinic):
    rule = first_rule(clinic)
    high_risk_rule_update(rule=rule, changes={"enabled": False})
    key, _ = api_key_create(organization=clinic, created_by=None, name="k")
    carried = key_record_build(key).high_risk_rules
    assert [r[0] for r in carried] == [n for n in DEFAULT_NAMES if n != rule.name]
    assert set(carried) <= set(DEFAULT_RULES)


def _migration():
    return importlib.import_module("healthcare.migrations.0003_high_risk_rules_seed")


def test_the_data_migration_seeds_existing_organisations_once(org):
    other = on_tier("pro", "Other")
    clinic = on_tier("healthcare", "Clinic")
    organization_change_tier(organization=org, tier=tier_get(slug="healthcare"))
    HighRiskRule.objects.filter(organization__in=[org, clinic]).delete()
    high_risk_rule_create(organization=clinic, name="mine", category="other", pattern="x")

    _migration().seed(django_apps, None)
    _migration().seed(django_apps, None)

    assert rule_names(org) == DEFAULT_NAMES
    assert rule_names(clinic) == ["mine"]
    assert rule_names(other) == []


# --- writes: checks and audit -----------------------------------------------------------


def test_create_stores_audits_and_returns_the_rule(clinic):
    rule = high_risk_rule_create(
        organization=clinic,
        name="  Opioids  ",
        category="dosage",
        pattern="oxycodone|fentanyl",
        scope="request",
        action="block",
        actor_label="ops@x.test",
    )
    assert (rule.name, rule.scope, rule.action, rule.enabled) == (
        "Opioids",
        "request",
        "block",
        True,
    )
    event = AuditEvent.objects.get(action="high_risk_rule.created")
    assert event.target == str(rule.pk)
    assert event.actor_label == "ops@x.test"
    assert event.data == {
        "name": "Opioids",
        "category": "dosage",
        "pattern": "oxycodone|fentanyl",
        "scope": "request",
        "action": "block",
        "enabled": True,
    }


@pytest.mark.parametrize(
    ("changes", "param", "message"),
    [
        ({"name": ""}, "name", "non-empty"),
        ({"name": "   "}, "name", "non-empty"),
        ({"name": "a\x00b"}, "name", "NUL"),
        ({"name": "n" * 81}, "name", "longer than 80"),
        ({"category": "surgery"}, "category", "dosage, diagnosis, triage, other"),
        ({"scope": "all"}, "scope", "request, response, both"),
        ({"action": "delete"}, "action", "flag, block"),
        ({"enabled": "yes"}, "enabled", "true or false"),
        ({"pattern": "(a"}, "pattern", "The pattern is not a valid RE2 regular expression"),
        ({"pattern": "a||b"}, "pattern", "empty term"),
        ({"pattern": "\x00"}, "pattern", "NUL"),
        ({"pattern": 5}, "pattern", "must be a string"),
    ],
)
def test_bad_values_are_refused_naming_the_field(clinic, changes, param, message):
    values = {"name": "r", "category": "other", "pattern": "x", **changes}
    with pytest.raises(AqtaError) as refused:
        high_risk_rule_create(organization=clinic, **values)
    assert (refused.value.status, refused.value.param) == (400, param)
    assert message in refused.value.message
    rule = first_rule(clinic)
    with pytest.raises(AqtaError) as refused:
        high_risk_rule_update(rule=rule, changes=changes)
    assert refused.value.param == param


def test_names_are_unique_in_an_organisation_only(clinic):
    other = on_tier("healthcare", "Other clinic")
    name = DEFAULT_RULES[0][0]
    with pytest.raises(AqtaError) as refused:
        high_risk_rule_create(organization=clinic, name=name, category="other", pattern="x")
    assert (refused.value.param, refused.value.code) == ("name", ErrorCode.INVALID_PARAMETER)
    rule = HighRiskRule.objects.get(organization=clinic, name=DEFAULT_RULES[1][0])
    with pytest.raises(AqtaError):
        high_risk_rule_update(rule=rule, changes={"name": name})
    high_risk_rule_create(organization=other, name="unique here", category="other", pattern="x")
    high_risk_rule_update(rule=rule, changes={"name": rule.name})  # its own name: no change


def test_an_organisation_has_at_most_so_many_rules(org):
    HighRiskRule.objects.bulk_create(
        HighRiskRule(organization=org, name=f"r{i}", category="other", pattern="x")
        for i in range(MAX_RULES_PER_ORGANIZATION)
    )
    with pytest.raises(AqtaError) as refused:
        high_risk_rule_create(organization=org, name="one more", category="other", pattern="x")
    assert refused.value.code == ErrorCode.INVALID_REQUEST
    assert f"at most {MAX_RULES_PER_ORGANIZATION}" in refused.value.message


def test_update_audits_what_changed_and_nothing_else(clinic):
    rule = first_rule(clinic)
    high_risk_rule_update(rule=rule, changes={"action": "block", "scope": rule.scope})
    event = AuditEvent.objects.get(action="high_risk_rule.updated")
    assert event.data == {"name": rule.name, "changes": {"action": {"from": "flag", "to": "block"}}}
    rule.refresh_from_db()
    assert rule.action == "block"

    high_risk_rule_update(rule=rule, changes={"action": "block"})  # the same again
    assert AuditEvent.objects.filter(action="high_risk_rule.updated").count() == 1


def test_update_refuses_fields_it_does_not_know(clinic):
    rule = first_rule(clinic)
    with pytest.raises(AqtaError) as refused:
        high_risk_rule_update(rule=rule, changes={"organization": "x"})
    assert refused.value.param == "organization"


def test_delete_audits_the_rule_as_it_was(clinic):
    rule = first_rule(clinic)
    rule_id, name = rule.pk, rule.name
    high_risk_rule_delete(rule=rule, actor_label="ops@x.test")
    assert not HighRiskRule.objects.filter(pk=rule_id).exists()
    event = AuditEvent.objects.get(action="high_risk_rule.deleted")
    assert (event.target, event.data["name"]) == (str(rule_id), name)


@pytest.mark.parametrize("rule_id", ["abc", "-1", "1.0", "", "²", "9" * 19, "1 ", "0x1"])
def test_a_malformed_id_is_not_found(clinic, rule_id):
    with pytest.raises(AqtaError) as refused:
        high_risk_rule_get(organization=clinic, rule_id=rule_id)
    assert refused.value.status == 404


def test_another_organisations_rule_is_not_found(clinic):
    other = on_tier("healthcare", "Other clinic")
    theirs = first_rule(other)
    with pytest.raises(AqtaError) as refused:
        high_risk_rule_get(organization=clinic, rule_id=theirs.pk)
    assert refused.value.status == 404
    assert high_risk_rule_get(organization=other, rule_id=str(theirs.pk)) == theirs


# --- cached key records -----------------------------------------------------------------


@pytest.fixture
def forgotten(monkeypatch):
    """The digests whose cached key records are dropped (after the commit)."""
    dropped: list[str] = []
    monkeypatch.setattr(
        key_records, "_forget", lambda digests, revoked=None: dropped.extend(digests)
    )
    return dropped


def test_every_change_drops_the_organisations_cached_key_records(
    clinic, forgotten, django_capture_on_commit_callbacks
):
    key, _ = api_key_create(organization=clinic, created_by=None, name="k")
    other = on_tier("healthcare", "Other clinic")
    their_key, _ = api_key_create(organization=other, created_by=None, name="k")
    with django_capture_on_commit_callbacks(execute=True):
        rule = high_risk_rule_create(organization=clinic, name="n", category="other", pattern="x")
    assert forgotten == [key.digest]
    with django_capture_on_commit_callbacks(execute=True):
        high_risk_rule_update(rule=rule, changes={"pattern": "y"})
    with django_capture_on_commit_callbacks(execute=True):
        high_risk_rule_delete(rule=rule)
    assert forgotten == [key.digest] * 3
    assert their_key.digest not in forgotten


def test_seeding_drops_the_cached_key_records(
    org, api_key, forgotten, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        organization_change_tier(organization=org, tier=tier_get(slug="healthcare"))
    assert api_key[0].digest in forgotten


def test_a_change_that_changes_nothing_drops_nothing(
    clinic, forgotten, django_capture_on_commit_callbacks
):
    api_key_create(organization=clinic, created_by=None, name="k")
    rule = first_rule(clinic)
    with django_capture_on_commit_callbacks(execute=True):
        high_risk_rule_update(rule=rule, changes={"enabled": True})
    assert forgotten == []


@pytest.mark.skipif(not aqta_redis.enabled(), reason="needs Redis (REDIS_URL)")
def test_with_redis_the_cached_record_is_deleted(clinic, django_capture_on_commit_callbacks):
    key, _ = api_key_create(organization=clinic, created_by=None, name="k")
    client = aqta_redis.sync_client()
    client.set(REDIS_PREFIX + key.digest, b"cached", ex=60)
    with django_capture_on_commit_callbacks(execute=True):
        high_risk_rule_create(organization=clinic, name="n", category="other", pattern="x")
    assert client.get(REDIS_PREFIX + key.digest) is None


# --- manage.py high_risk_rules_seed ------------------------------------------------------


def _run(*args) -> str:
    stdout = StringIO()
    call_command("high_risk_rules_seed", *args, stdout=stdout)
    return stdout.getvalue()


def test_the_command_seeds_named_organisations(org, clinic):
    HighRiskRule.objects.filter(organization=clinic).delete()
    output = _run(clinic.slug, str(org.pk))
    assert output.splitlines() == [
        f"{clinic.slug}: {len(DEFAULT_RULES)} default rules added",
        f"{org.slug}: skipped, the Pro tier has no receipts",
    ]
    assert rule_names(clinic) == DEFAULT_NAMES and rule_names(org) == []
    assert AuditEvent.objects.filter(action="high_risk_rules.seeded", actor_label="cli").exists()


def test_the_command_with_all_seeds_every_organisation_on_a_tier_with_receipts(org, clinic):
    tier = tier_get(slug="pro")
    tier.receipts = True  # an operator granted receipts to Pro
    tier.save()
    output = _run("--all")
    assert f"{org.slug}: {len(DEFAULT_RULES)} default rules added" in output
    assert f"{clinic.slug}: unchanged, it has rules already" in output
    assert rule_names(org) == DEFAULT_NAMES


@pytest.mark.parametrize("args", [(), ("--all", "acme"), ("no-such-org",)])
def test_the_command_refuses_bad_arguments(db, args):
    with pytest.raises(CommandError):
        _run(*args)
