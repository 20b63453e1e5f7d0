"""The dashboard's Bias detection and Reports pages in a real browser (Chromium through
Playwright, like ``test_browser_audit``): a Healthcare owner signs in, reads the run list
(one run at 40 %, one completed with a flag), a run's findings, watches a running run's
progress arrive without reloading, then lists, requests and downloads reports.

Full-page screenshots at 1280 x 900 and 390 x 844 go to ``artifacts/dashboard-*.png``; on the
phone no page may be wider than the screen (wide tables scroll inside their box).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import uuid
from pathlib import Path

import rfc8785
from playwright.sync_api import Page, ViewportSize, expect

from accounts.services import organization_create
from accounts.tests.factories import PASSWORD, UserFactory
from billing.selectors import tier_get
from compliance.models import BiasRun, ComplianceReport, JobStatus
from compliance.tests.test_bias_pages import completed_run, realistic_findings, running_run
from compliance.tests.test_report_pages import running_report, signed_report
from tests import test_browser_e2e as e2e
from tests.test_browser_e2e import NEXT_FRAMES, Browser

# The end-to-end test's fixtures, used here by name.
chromium, static_root, mock_provider = e2e.chromium, e2e.static_root, e2e.mock_provider
live, committed, browser = e2e.live, e2e.committed, e2e.browser

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
DESKTOP: ViewportSize = {"width": 1280, "height": 900}
PHONE: ViewportSize = {"width": 390, "height": 844}
SHOTS = ("bias", "bias-run", "reports")
SIZES = ("desktop", "phone")
OVERFLOW = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"


def _paths() -> list[Path]:
    return [ARTIFACTS / f"dashboard-{name}-{size}.png" for name in SHOTS for size in SIZES]


def screenshot(page: Page, name: str) -> None:
    """Full-page shots at desktop and phone size; the phone's page must not scroll sideways."""
    for suffix, size in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(size)
        page.evaluate(NEXT_FRAMES)
        page.screenshot(path=ARTIFACTS / f"dashboard-{name}-{suffix}.png", full_page=True)
        overflow = page.evaluate(OVERFLOW)
        assert overflow <= 0, f"{name} is {overflow} px wider than a {size['width']} px screen"
    page.set_viewport_size(DESKTOP)


def test_the_bias_and_reports_pages(live, committed, browser):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    failure = ARTIFACTS / "dashboard-compliance-failure.png"
    for shot in [failure, *_paths()]:
        shot.unlink(missing_ok=True)
    try:
        _journey(live, browser)
    except BaseException:
        with contextlib.suppress(Exception):
            browser.page.screenshot(path=failure, full_page=True)
        raise
    for shot in _paths():
        assert shot.is_file() and shot.stat().st_size > 0, f"missing screenshot {shot}"
    assert not browser.problems, "the browser saw errors:\n" + "\n".join(browser.problems)


def _clinic() -> tuple[str, BiasRun, BiasRun, ComplianceReport]:
    owner = UserFactory.create(email=f"bias-{uuid.uuid4().hex[:8]}@example.com")
    clinic = organization_create(
        name="St Mary's Clinic", owner=owner, tier=tier_get(slug="healthcare")
    )
    done = completed_run(clinic)
    running = running_run(clinic)
    report = signed_report(clinic)
    running_report(clinic)
    return owner.email, running, done, report


def _journey(live, window: Browser) -> None:
    email, running, done, report = _clinic()
    page = window.page

    page.goto(live.url + "/accounts/login/")
    page.locator('#login-form input[name="login"]').fill(email)
    page.locator('#login-form input[name="password"]').fill(PASSWORD)
    page.locator("#login-submit").click()
    expect(page).to_have_url(re.compile(r"/dashboard/$"))

    # --- The run list ------------------------------------------------------------------------
    window.go("Bias", "bias/")
    rows = page.locator('[data-testid="bias-run-row"]')
    expect(rows).to_have_count(2)
    expect(rows.first).to_have_attribute("data-run-id", str(running.pk))
    expect(rows.first.locator("progress")).to_have_attribute("value", "40")
    expect(rows.first).to_contain_text("Sent 120 of 270 probes")
    expect(rows.nth(1).locator('[data-testid="run-flagged"]')).to_have_text("1 flagged")
    screenshot(page, "bias")

    # --- Bad input stays in the form ---------------------------------------------------------
    form = page.locator("#probe-run-form")
    form.locator('input[name="repetitions"]').fill("0")
    page.locator("#probe-run-submit").click()
    expect(page.locator("#field-repetitions .errors")).to_contain_text("greater than or equal")
    assert BiasRun.objects.count() == 2

    # --- A completed run's findings ----------------------------------------------------------
    page.locator(f'[data-run-id="{done.pk}"] a').click()
    expect(page).to_have_url(re.compile(rf"/dashboard/bias/{done.pk}/$"))
    cards = page.locator('[data-testid="finding"]')
    expect(cards).to_have_count(3)
    expect(cards.first).to_have_attribute("data-status", "flagged")
    expect(cards.first.locator('[data-testid="finding-status"]')).to_have_text("Flagged")
    black = cards.first.locator('[data-group="black"]')
    expect(black).to_have_attribute("data-below", "true")
    expect(black).to_contain_text("50.0 %")
    expect(page.locator('[data-testid="bias-legend"]')).to_contain_text("not proof of harm")
    screenshot(page, "bias-run")

    # --- A running run's progress arrives by itself, then its findings -----------------------
    page.goto(f"{live.url}/dashboard/bias/{running.pk}/")
    status = page.locator('[data-testid="run-status"]')
    expect(status.locator("progress")).to_have_attribute("value", "40")
    BiasRun.objects.filter(pk=running.pk).update(progress=70, step="Sent 189 of 270 probes")
    expect(status.locator('[data-job-field="step"]')).to_have_text("Sent 189 of 270 probes")
    expect(status.locator("progress")).to_have_js_property("value", 70)
    BiasRun.objects.filter(pk=running.pk).update(
        status=JobStatus.COMPLETED, progress=100, step="Completed", findings=realistic_findings()
    )
    expect(cards).to_have_count(3)  # the page reloaded once the run finished
    expect(status).to_have_attribute("data-status", "completed")

    # --- Reports -----------------------------------------------------------------------------
    window.go("Reports", "reports/")
    reports = page.locator('[data-testid="report-row"]')
    expect(reports).to_have_count(2)
    expect(reports.first.locator("progress")).to_have_attribute("value", "40")
    expect(reports.nth(1)).to_contain_text(report.content_sha256[:12])
    screenshot(page, "reports")

    with page.expect_download() as download:
        reports.nth(1).locator('[data-testid="report-download"]').click()
    document = json.loads(Path(download.value.path()).read_text())
    digest = hashlib.sha256(rfc8785.dumps(document["report"])).hexdigest()
    assert digest == report.content_sha256

    request = page.locator("#report-request-form")
    request.locator('select[name="month"]').select_option("")
    request.locator('input[name="start"]').fill("2026-11-02")
    request.locator('input[name="end"]').fill("2026-11-01")
    page.locator("#report-request-submit").click()
    expect(page.locator("#field-end .errors")).to_contain_text("before the start date")
    request.locator('input[name="start"]').fill("2026-11-01")
    request.locator('input[name="end"]').fill("2026-11-30")
    request.locator('select[name="format"]').select_option("json")
    page.locator("#report-request-submit").click()
    expect(page.locator('[data-testid="messages"]')).to_contain_text("Report requested")
    expect(reports).to_have_count(3)
    expect(reports.first).to_contain_text("1 Nov 2026 – 30 Nov 2026")  # noqa: RUF001
