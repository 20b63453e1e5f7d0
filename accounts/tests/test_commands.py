"""The operator CLI: org_create, org_set_tier, apikey_create, apikey_revoke, demo_setup."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts.models import ApiKey, Membership, Organization, Role, User
from accounts.selectors import api_key_get_by_secret
from accounts.services import api_key_create, organization_create
from billing.selectors import tier_get
from compliance.models import AuditEvent


def run(*args, **options) -> tuple[str, str]:
    """(stdout, stderr) of a management command."""
    stdout, stderr = StringIO(), StringIO()
    call_command(*args, stdout=stdout, stderr=stderr, **options)
    return stdout.getvalue(), stderr.getvalue()


def last_line(output: str) -> str:
    return output.rstrip("\n").splitlines()[-1]


# --- org_create ---------------------------------------------------------------------------


def test_org_create_creates_the_organisation_on_the_tier_with_a_new_owner(db):
    stdout, stderr = run(
        "org_create", "--name", "Beta Labs", "--tier", "starter", "--owner-email", "Ann@Beta.test"
    )

    organization = Organization.objects.get(name="Beta Labs")
    assert organization.tier.slug == "starter"
    owner = User.objects.get(email="ann@beta.test")
    assert not owner.has_usable_password()
    assert Membership.objects.get(organization=organization).user == owner
    assert Membership.objects.get(organization=organization).role == Role.OWNER
    assert stdout.split() == [str(organization.pk), organization.slug, "starter"]
    assert "Created user ann@beta.test" in stderr
    event = AuditEvent.objects.get(action="organization.created", organization=organization)
    assert event.actor_label == "cli"


def test_org_create_gives_the_organisation_to_an_existing_user(user):
    _, stderr = run(
        "org_create", "--name", "Gamma", "--tier", "pro", "--owner-email", user.email.upper()
    )

    organization = Organization.objects.get(name="Gamma")
    assert organization.tier.slug == "pro"
    assert organization.memberships.get().user == user
    assert User.objects.count() == 1
    assert stderr == ""


def test_org_create_rejects_an_unknown_tier_naming_the_valid_ones(db):
    with pytest.raises(CommandError) as error:
        run("org_create", "--name", "Delta", "--tier", "platinum", "--owner-email", "d@d.test")

    assert "platinum" in str(error.value)
    for slug in ("free", "starter", "pro", "healthcare", "enterprise"):
        assert slug in str(error.value)
    assert not Organization.objects.filter(name="Delta").exists()
    assert not User.objects.filter(email="d@d.test").exists()


# --- org_set_tier -------------------------------------------------------------------------


def test_org_set_tier_moves_an_organisation_given_by_slug(org):
    stdout, _ = run("org_set_tier", org.slug, "--tier", "healthcare")

    org.refresh_from_db()
    assert org.tier.slug == "healthcare"
    assert stdout.strip() == f"{org.slug} is now on healthcare"
    event = AuditEvent.objects.get(action="organization.tier_changed", organization=org)
    assert event.data == {"from": "pro", "to": "healthcare"}
    assert event.actor_label == "cli"


def test_org_set_tier_moves_an_organisation_given_by_id(org):
    run("org_set_tier", str(org.pk), "--tier", "free")

    org.refresh_from_db()
    assert org.tier.slug == "free"


def test_org_set_tier_rejects_an_unknown_organisation(db):
    with pytest.raises(CommandError, match="No organisation with id or slug 'nope'"):
        run("org_set_tier", "nope", "--tier", "free")


def test_org_set_tier_rejects_an_unknown_tier(org):
    with pytest.raises(CommandError, match="Unknown tier 'gold'"):
        run("org_set_tier", org.slug, "--tier", "gold")

    org.refresh_from_db()
    assert org.tier.slug == "pro"


# --- apikey_create ------------------------------------------------------------------------


def test_apikey_create_prints_a_working_secret_on_the_last_line(org):
    stdout, stderr = run("apikey_create", org.slug, "--name", "ci")

    secret = last_line(stdout)
    api_key = api_key_get_by_secret(secret=secret)
    assert api_key is not None
    assert api_key.name == "ci"
    assert api_key.organization == org
    assert api_key.created_by is None
    assert str(api_key.pk) in stderr
    assert secret not in stderr


def test_apikey_create_stores_no_trace_of_the_secret(org):
    stdout, _ = run("apikey_create", str(org.pk), "--name", "ci")

    secret = last_line(stdout)
    for row in ApiKey.objects.values():
        assert all(secret not in str(value) for value in row.values())
    for event in AuditEvent.objects.values():
        assert all(secret not in str(value) for value in event.values())


def test_apikey_create_passes_the_rate_limit_and_allowed_models_on(org):
    stdout, _ = run(
        "apikey_create",
        org.slug,
        "--name",
        "limited",
        "--rate-limit",
        "50",
        "--allowed-model",
        "sonar",
        "--allowed-model",
        "gpt-4o-mini",
    )

    api_key = api_key_get_by_secret(secret=last_line(stdout))
    assert api_key is not None
    assert api_key.rate_limit_per_minute == 50
    assert api_key.allowed_models == ["gpt-4o-mini", "sonar"]


def test_apikey_create_rejects_an_unknown_model(org):
    with pytest.raises(CommandError, match="gpt-9"):
        run("apikey_create", org.slug, "--name", "x", "--allowed-model", "gpt-9")

    assert not ApiKey.objects.exists()


def test_apikey_create_enforces_the_tier_rate_limit_ceiling(user):
    free = organization_create(name="Thrifty", owner=user, tier=tier_get(slug="free"))

    with pytest.raises(CommandError, match="at most 5 requests/minute"):
        run("apikey_create", free.slug, "--name", "x", "--rate-limit", "100")


def test_apikey_create_rejects_an_unknown_organisation(db):
    with pytest.raises(CommandError, match="No organisation"):
        run("apikey_create", "nope", "--name", "x")


# --- apikey_revoke ------------------------------------------------------------------------


def test_apikey_revoke_stops_the_key_at_once(api_key):
    key, secret = api_key

    stdout, _ = run("apikey_revoke", str(key.pk))

    assert api_key_get_by_secret(secret=secret) is None
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert stdout.startswith(f"Revoked {key.pk}")
    assert AuditEvent.objects.get(action="api_key.revoked", target=str(key.pk)).actor_label == "cli"


def test_apikey_revoke_rejects_an_unknown_key(db):
    with pytest.raises(CommandError, match="No API key"):
        run("apikey_revoke", "not-a-uuid")


# --- demo_setup ---------------------------------------------------------------------------


def demo_organization() -> Organization:
    """The one organisation the demo user owns."""
    return Organization.objects.get(
        memberships__user__email="demo@aqta.local", memberships__role=Role.OWNER
    )


def test_demo_setup_creates_a_pro_organisation_and_a_working_key(db):
    stdout, _ = run("demo_setup")

    organization = demo_organization()
    assert organization.tier.slug == "pro"
    api_key = api_key_get_by_secret(secret=last_line(stdout))
    assert api_key is not None
    assert api_key.organization == organization
    login = next(line for line in stdout.splitlines() if line.startswith("Demo login:"))
    owner = User.objects.get(email="demo@aqta.local")
    assert owner.check_password(login.rsplit(" / ", 1)[1])


def test_demo_setup_run_again_revokes_the_old_key_and_prints_a_new_one(db):
    first = last_line(run("demo_setup")[0])

    second = last_line(run("demo_setup")[0])

    assert second != first
    assert api_key_get_by_secret(secret=first) is None
    assert api_key_get_by_secret(secret=second) is not None
    demo_keys = ApiKey.objects.filter(organization=demo_organization())  # still just one org
    assert demo_keys.count() == 2
    assert demo_keys.filter(revoked_at__isnull=True).count() == 1


def test_demo_setup_leaves_other_keys_of_the_demo_organisation_alone(db):
    run("demo_setup")
    _, other_secret = api_key_create(organization=demo_organization(), created_by=None, name="ci")

    run("demo_setup")

    assert api_key_get_by_secret(secret=other_secret) is not None


def test_demo_setup_leaves_someone_elses_organisation_named_demo_alone(db):
    run("org_create", "--name", "Demo", "--tier", "free", "--owner-email", "someone@else.test")
    theirs = Organization.objects.get(memberships__user__email="someone@else.test")

    stdout, _ = run("demo_setup")

    api_key = api_key_get_by_secret(secret=last_line(stdout))
    assert api_key is not None
    assert api_key.organization == demo_organization() != theirs
    theirs.refresh_from_db()
    assert theirs.tier.slug == "free"
    assert not theirs.api_keys.exists()
