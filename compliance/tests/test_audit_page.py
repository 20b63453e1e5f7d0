"""The dashboard's Audit page (server-rendered; the browser test is tests/test_browser_audit.py)."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from accounts.models import Membership, Role
from accounts.services import organization_create
from accounts.tests.factories import UserFactory
from billing.selectors import tier_get
from compliance.checkpoints import checkpoint_run
from compliance.models import AuditEvent
from compliance.services import audit_event_record
from compliance.tests import tamper

pytestmark = pytest.mark.django_db

PAGE = "/dashboard/audit/"


@pytest.fixture
def clinic(user):
    organization = organization_create(name="Clinic", owner=user, tier=tier_get(slug="healthcare"))
    for n in range(30):
        audit_event_record(action=f"test.{n % 3}", organization=organization, target=f"t{n}")
    return organization


@pytest.fixture
def browser(user, clinic) -> Client:
    client = Client()
    client.force_login(user)
    return client


def rows(html: str) -> list[tuple[int, str]]:
    found = re.findall(r'data-testid="audit-row" data-sequence="(\d+)" data-action="([^"]+)"', html)
    return [(int(sequence), action) for sequence, action in found]


def test_the_page_lists_the_trail_newest_first_in_pages(browser):
    response = browser.get(PAGE)
    html = response.content.decode()

    assert response.status_code == 200
    assert 'aria-current="page">Audit</a>' in html
    assert [s for s, _ in rows(html)] == list(range(31, 6, -1))
    assert "31 events, newest first" in html
    older = browser.get(PAGE, {"page": 2}).content.decode()
    assert [s for s, _ in rows(older)] == list(range(6, 0, -1))


def test_other_tiers_have_no_link_and_get_a_403(user, org):
    client = Client()
    client.force_login(user)  # `org` is the user's Pro organisation
    overview = client.get("/dashboard/").content.decode()
    assert "dashboard/audit/" not in overview
    response = client.get(PAGE)
    assert response.status_code == 403
    assert "Healthcare tier" in response.content.decode()


def test_filters_narrow_the_list_and_the_exports(browser):
    html = browser.get(PAGE, {"action": "test.1", "target": "t4"}).content.decode()

    assert rows(html) == [(6, "test.1")]
    assert "1 event match these filters" in html
    assert 'href="/api/compliance/audit-trail?action=test.1&amp;target=t4&amp;format=csv"' in html
    assert rows(browser.get(PAGE, {"action": "test.*"}).content.decode())[0] == (31, "test.2")


@pytest.mark.parametrize(
    "query",
    [{"start": "2026-13-40"}, {"end": "9999-12-31"}, {"start": "2030-01-01", "end": "2020-01-01"}],
)
def test_odd_dates_are_never_a_500(browser, query):
    assert browser.get(PAGE, query).status_code == 200


def test_the_export_links_work_with_the_session(browser):
    html = browser.get(PAGE, {"action": "test.0"}).content.decode()
    link = re.search(r'href="([^"]+format=jsonl)"', html)
    assert link is not None
    response = browser.get(link.group(1).replace("&amp;", "&"))
    assert response.status_code == 200
    assert b"".join(response.streaming_content).count(b"\n") == 10


def test_verify_reports_an_intact_chain_and_is_recorded(user, clinic):
    checkpoint_run()
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    page = client.get(PAGE)
    token = page.cookies["csrftoken"].value

    assert client.post(PAGE).status_code == 403  # no CSRF token
    response = client.post(PAGE, {"csrfmiddlewaretoken": token})

    html = response.content.decode()
    assert response.status_code == 200
    assert 'data-kind="audit" data-valid="true"' in html
    assert "31 of 31 checked; newest signed checkpoint" in html
    assert AuditEvent.objects.filter(action="audit_chain.verified", actor=user).count() == 1


def test_verify_shows_where_the_chain_breaks(browser, clinic):
    victim = AuditEvent.objects.get(chain__scope=str(clinic.pk), sequence=12)
    tamper.edit_event(str(clinic.pk), 12, target="someone else")

    html = browser.post(PAGE).content.decode()

    assert 'data-kind="audit" data-valid="false"' in html
    assert 'data-testid="break-sequence">#12<' in html
    assert f"(row {victim.pk})" in html
    assert "the event was altered" in html


def test_members_may_read_and_verify(clinic):
    member = UserFactory.create()
    Membership.objects.create(organization=clinic, user=member, role=Role.MEMBER)
    client = Client()
    client.force_login(member)
    assert client.get(PAGE).status_code == 200
    assert 'data-valid="true"' in client.post(PAGE).content.decode()
