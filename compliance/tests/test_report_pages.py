"""The dashboard's Reports page: the list, requesting a report, and downloading it
(server-rendered; the browser test is tests/test_browser_compliance.py)."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from datetime import date, timedelta
from typing import Any

import pytest
import rfc8785
from django.test import Client
from django.utils import timezone

from accounts.models import Membership, Role
from accounts.services import organization_create
from accounts.tests.factories import UserFactory
from billing.selectors import tier_get
from compliance.forms import last_month, month_bounds, month_choices
from compliance.models import AuditEvent, ComplianceReport, JobStatus, ReportFormat
from compliance.reports.generate import public_id
from compliance.reports.signing import report_sign, report_verify
from compliance.tests.jobs import jobs_run
from gateway.tests.conftest import seed_catalogue
from healthcare.signing import issuer_key

pytestmark = pytest.mark.django_db

PAGE = "/dashboard/reports/"


def signed_report(organization, **fields: Any) -> ComplianceReport:
    """A completed JSON report with a real signed document."""
    content = {"id": "rpt_test", "period": {"start": "2026-11-01", "end": "2026-11-30"}}
    document = report_sign(content)
    integrity = document["integrity"]
    values: dict[str, Any] = {
        "organization": organization,
        "period_start": date(2026, 11, 1),
        "period_end": date(2026, 11, 30),
        "format": ReportFormat.JSON,
        "status": JobStatus.COMPLETED,
        "progress": 100,
        "step": "Ready",
        "document": document,
        "content_sha256": integrity["content_sha256"],
        "signature": integrity["signature"],
        "key_id": integrity["key_id"],
        "finished_at": timezone.now(),
        **fields,
    }
    return ComplianceReport.objects.create(**values)


def running_report(organization, **fields: Any) -> ComplianceReport:
    values: dict[str, Any] = {
        "organization": organization,
        "period_start": date(2026, 10, 1),
        "period_end": date(2026, 10, 31),
        "format": ReportFormat.PDF,
        "status": JobStatus.RUNNING,
        "progress": 40,
        "step": "Collecting usage, policy and audit records",
        **fields,
    }
    return ComplianceReport.objects.create(**values)


@pytest.fixture
def committed(transactional_db) -> None:
    """Committed data, for the tests that run a job: a job takes its lease with
    close_old_connections(), which would close the connection of a test's transaction.
    The catalogue the data migrations seeded is gone after such a test: seed it again."""
    seed_catalogue()


@pytest.fixture
def clinic(user):
    return organization_create(name="Clinic", owner=user, tier=tier_get(slug="healthcare"))


@pytest.fixture
def owner(user, clinic) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def member(clinic) -> Client:
    person = UserFactory.create()
    Membership.objects.create(organization=clinic, user=person, role=Role.MEMBER)
    client = Client()
    client.force_login(person)
    return client


def report_ids(html: str) -> list[str]:
    return re.findall(r'data-testid="report-row" data-report-id="([^"]+)"', html)


def field_errors(html: str, name: str) -> list[str]:
    match = re.search(rf'id="field-{name}".*?</div>', html, re.S)
    assert match is not None, f"no field {name}"
    return re.findall(r"<li>(.*?)</li>", match.group(0))


def form_errors(html: str) -> list[str]:
    match = re.search(r'<ul class="form-errors"[^>]*>(.*?)</ul>', html, re.S)
    return re.findall(r"<li>(.*?)</li>", match.group(1)) if match else []


# --- Tier and roles ----------------------------------------------------------------------


def test_healthcare_organisations_see_the_tab(owner):
    html = owner.get("/dashboard/").content.decode()
    assert 'href="/dashboard/reports/" data-testid="nav-reports">Reports</a>' in html


def test_other_tiers_have_no_tab_and_get_the_refusal_page(user, org):
    client = Client()
    client.force_login(user)  # `org` is the user's Pro organisation
    assert "/dashboard/reports/" not in client.get("/dashboard/").content.decode()

    response = client.get(PAGE)
    html = response.content.decode()
    assert response.status_code == 403
    assert 'data-testid="forbidden-message"' in html
    assert "Compliance reports are part of the Healthcare tier; this organisation is on Pro." in (
        html
    )
    assert client.post(PAGE, {"month": "2026-11", "format": "json"}).status_code == 403
    theirs = signed_report(org)
    assert client.get(f"{PAGE}{public_id(theirs)}/download/").status_code == 403
    assert ComplianceReport.objects.count() == 1


def test_members_read_and_download_but_cannot_request(member, clinic):
    report = signed_report(clinic)
    html = member.get(PAGE).content.decode()
    assert 'data-testid="reports-members-note"' in html
    assert "report-request-form" not in html
    assert report_ids(html) == [public_id(report)]
    assert member.get(f"{PAGE}{public_id(report)}/download/").status_code == 200

    response = member.post(PAGE, {"month": "2026-11", "format": "json"})
    assert response.status_code == 403
    assert "Only owners and admins" in response.content.decode()
    assert ComplianceReport.objects.count() == 1


def test_a_post_without_the_csrf_token_is_refused(user, clinic):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.post(PAGE, {"month": "2026-11", "format": "json"}).status_code == 403
    assert not ComplianceReport.objects.exists()


# --- The list ----------------------------------------------------------------------------


def test_the_list_shows_status_hash_and_download_link(owner, clinic):
    done = signed_report(clinic)
    running = running_report(clinic)
    html = owner.get(PAGE).content.decode()

    assert report_ids(html) == [public_id(running), public_id(done)]
    first, second = (row.split("</tr>")[0] for row in html.split('data-testid="report-row"')[1:3])
    assert f'data-poll-url="/api/compliance/reports/{public_id(running)}"' in first
    assert '<progress max="100" value="40"' in first
    assert "Collecting usage, policy and audit records" in first
    assert "report-download" not in first
    assert "1 Oct 2026 \N{EN DASH} 31 Oct 2026" in first and "<td>PDF</td>" in first

    assert "data-poll-url" not in second
    assert f">{done.content_sha256[:12]}…</code>" in second
    assert f'href="{PAGE}{public_id(done)}/download/"' in second
    assert '<span class="badge ok" data-job-field="status" data-status="completed">' in second


def test_the_list_is_paginated_and_scoped_to_the_organisation(owner, clinic, org):
    for _ in range(26):
        running_report(clinic)
    running_report(org)
    first = report_ids(owner.get(PAGE).content.decode())
    second = report_ids(owner.get(PAGE, {"page": "2"}).content.decode())
    assert (len(first), len(second)) == (25, 1)
    mine = {public_id(r) for r in ComplianceReport.objects.filter(organization=clinic)}
    assert set(first + second) == mine


def test_the_form_offers_the_recent_months_with_last_month_chosen(owner):
    html = owner.get(PAGE).content.decode()
    today = timezone.now().date()
    expected = last_month(today)
    label = date(int(expected[:4]), int(expected[5:]), 1).strftime("%B %Y")
    assert f'<option value="{expected}" selected>{label}</option>' in html
    assert f'<option value="{today:%Y-%m}">{today:%B %Y} (so far)</option>' in html


def test_the_month_choices_go_back_three_years_across_new_year():
    choices = month_choices(date(2027, 1, 20))
    assert choices[0][0] == ""
    assert choices[1:4] == [
        ("2027-01", "January 2027 (so far)"),
        ("2026-12", "December 2026"),
        ("2026-11", "November 2026"),
    ]
    assert len(choices) == 1 + 37 and choices[-1] == ("2024-01", "January 2024")


# --- Requesting a report -----------------------------------------------------------------


def test_a_request_creates_a_signed_report_that_downloads(
    committed, user, clinic, eager_jobs, django_capture_on_commit_callbacks
):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    token = client.get(PAGE).cookies["csrftoken"].value
    with jobs_run(django_capture_on_commit_callbacks):
        response = client.post(
            PAGE, {"month": "2026-11", "format": "json", "csrfmiddlewaretoken": token}
        )

    report = ComplianceReport.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"{PAGE}#report-{public_id(report)}"
    assert (report.period_start, report.period_end) == (date(2026, 11, 1), date(2026, 11, 30))
    assert report.status == JobStatus.COMPLETED and report.created_by == user
    assert AuditEvent.objects.filter(action="report.requested", actor=user).count() == 1

    html = client.get(PAGE).content.decode()
    assert "Report requested" in html
    link = re.search(r'href="([^"]+/download/)"', html)
    assert link is not None
    download = client.get(link.group(1))
    assert download.status_code == 200
    assert download["Content-Type"] == "application/json"
    assert 'filename="aqta-report-2026-11-01-2026-11-30.json"' in download["Content-Disposition"]
    document = json.loads(download.content)
    digest = hashlib.sha256(rfc8785.dumps(document["report"])).hexdigest()
    assert digest == document["integrity"]["content_sha256"] == report.content_sha256
    assert f">{digest[:12]}…</code>" in html
    key = issuer_key()
    assert report_verify(document, {key.key_id: key.public_key}).valid


def test_start_and_end_days_make_the_period(owner, clinic, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        response = owner.post(PAGE, {"start": "2026-09-15", "end": "2026-10-14", "format": "pdf"})
    assert response.status_code == 302
    assert len(callbacks) == 1  # the generation, enqueued on commit
    report = ComplianceReport.objects.get()
    assert (report.period_start, report.period_end, report.format) == (
        date(2026, 9, 15),
        date(2026, 10, 14),
        "pdf",
    )
    assert report.status == JobStatus.QUEUED


def _future_month() -> str:
    today = timezone.now().date()
    return f"{today.replace(day=28) + timedelta(days=5):%Y-%m}"


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"start": "2026-11-02", "end": "2026-11-01"}, "end", "before the start date"),
        ({"start": "2025-01-01", "end": "2026-01-02"}, "end", "At most 366 days."),
        ({"month": "2026-13"}, "month", "Select a valid choice."),
        ({"month": "1999-12"}, "month", "Select a valid choice."),
        ({"month": _future_month()}, "month", "Select a valid choice."),
        ({"month": "2026-11\x00"}, "month", "Select a valid choice."),
        ({"month": "2026-11" * 1000}, "month", "Select a valid choice."),
        ({"start": "2026-02-30", "end": "2026-03-01"}, "start", "Enter a valid date."),
        ({"month": "2026-10", "format": "docx"}, "format", "Select a valid choice."),
    ],
)
def test_bad_input_is_shown_in_the_form(owner, body, field, message):
    response = owner.post(PAGE, {"format": "json", **body})
    html = response.content.decode()
    assert response.status_code == 200
    assert any(message in error for error in field_errors(html, field)), field_errors(html, field)
    assert not ComplianceReport.objects.exists()


def test_a_period_that_has_not_begun_is_refused(owner):
    tomorrow = timezone.now().date() + timedelta(days=1)
    body = {"start": tomorrow.isoformat(), "end": (tomorrow + timedelta(days=6)).isoformat()}
    html = owner.post(PAGE, {"format": "json", **body}).content.decode()
    assert field_errors(html, "start") == ["The period has not begun."]
    assert not ComplianceReport.objects.exists()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "Give a month, or both a start and an end day."),
        ({"start": "2026-11-01"}, "Give a month, or both a start and an end day."),
        (
            {"month": "2026-11", "start": "2026-11-01", "end": "2026-11-30"},
            "Give a month or the days, not both: pick “Other period” to give the days.",
        ),
    ],
)
def test_a_period_needs_a_month_or_two_days(owner, body, message):
    html = owner.post(PAGE, {"format": "json", **body}).content.decode()
    assert form_errors(html) == [message]
    assert not ComplianceReport.objects.exists()


# --- Downloading -------------------------------------------------------------------------


def test_another_organisations_report_is_a_404(owner, org):
    theirs = signed_report(org)
    assert owner.get(f"{PAGE}{public_id(theirs)}/download/").status_code == 404
    assert owner.get(f"{PAGE}{theirs.pk}/download/").status_code == 404
    assert owner.get(f"{PAGE}rpt_{uuid.uuid4().hex}/download/").status_code == 404
    assert owner.get(f"{PAGE}not-a-report/download/").status_code == 404


def test_a_report_not_ready_sends_back_to_the_list(owner, clinic):
    report = running_report(clinic)
    response = owner.get(f"{PAGE}{public_id(report)}/download/", follow=True)
    assert response.redirect_chain == [(PAGE, 302)]
    assert "The report is running; download it once it is completed." in (response.content.decode())


def test_the_download_is_the_stored_document(owner, clinic):
    report = signed_report(clinic)
    response = owner.get(f"{PAGE}{public_id(report)}/download/")
    assert json.loads(response.content) == report.document
    assert response["X-Content-Type-Options"] == "nosniff"


# --- Months ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "bounds"),
    [
        ("2024-02", (date(2024, 2, 1), date(2024, 2, 29))),
        ("2026-02", (date(2026, 2, 1), date(2026, 2, 28))),
        ("2026-12", (date(2026, 12, 1), date(2026, 12, 31))),
        ("2026-13", None),
        ("2026-00", None),
        ("2026-1", None),
        ("26-11", None),
        ("3000-01", None),
        ("", None),
    ],
)
def test_month_bounds(text, bounds):
    assert month_bounds(text) == bounds


def test_last_month_crosses_the_year():
    assert last_month(date(2027, 1, 15)) == "2026-12"
    assert last_month(date(2026, 3, 31)) == "2026-02"
