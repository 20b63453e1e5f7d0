from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from accounts.models import User
from compliance.models import AuditEvent

pytestmark = pytest.mark.django_db


def test_emails_are_folded_to_lower_case_on_clean():
    user = User(email="Grace@Example.COM")
    user.set_unusable_password()
    user.full_clean()
    assert user.email == "grace@example.com"


def test_a_duplicate_email_in_another_case_gets_a_readable_error():
    User.objects.create_user(email="grace@example.com")
    duplicate = User(email="GRACE@example.com", password="x")
    with pytest.raises(ValidationError, match="already exists"):
        duplicate.full_clean()


def test_editing_an_organisation_in_the_admin_is_audited(client, org, settings):
    settings.AQTA_STAFF_REQUIRE_MFA = False
    admin = User.objects.create_superuser(email="ops@example.com", password="pw-ops-123456")
    client.force_login(admin)
    page = client.get(f"/admin/accounts/organization/{org.pk}/change/")
    form = page.context["adminform"].form
    data = {name: form[name].value() for name in form.fields if form[name].value() is not None}
    data |= {"content_logging": "on", "memberships-TOTAL_FORMS": "0"}
    data |= {"memberships-INITIAL_FORMS": "0", "memberships-MIN_NUM_FORMS": "0"}
    data["memberships-MAX_NUM_FORMS"] = "1000"

    response = client.post(f"/admin/accounts/organization/{org.pk}/change/", data)

    assert response.status_code == 302, response.content[:2000]
    org.refresh_from_db()
    assert org.content_logging is True
    event = AuditEvent.objects.get(action="organization.updated", organization=org)
    assert event.actor == admin and event.data == {"content_logging": "True"}
