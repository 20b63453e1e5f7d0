"""The Receipts pages in a real browser: Playwright drives Debian's Chromium against a live
server sharing the test database. List, filter, detail, Verify (its POST with the CSRF
token), an export downloaded through its link; screenshots at desktop and phone width go
to ``artifacts/screenshots/receipts-*.png``.
"""

from __future__ import annotations

import contextlib
import re
from decimal import Decimal

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone
from playwright.sync_api import expect

from accounts.services import api_key_create, organization_create
from accounts.tests.factories import UserFactory
from billing.selectors import tier_get
from compliance.models import AuditEvent
from gateway.models import Trace
from gateway.tests.conftest import seed_catalogue
from healthcare import keyring
from healthcare.tests.factories import receipt_make
from tests.test_browser_e2e import (  # noqa: F401  (fixtures)
    SCREENSHOTS,
    Browser,
    browser,
    chromium,
)

SHOTS = ("receipts-list", "receipts-detail")


@pytest.fixture
def customer(transactional_db):
    """A Healthcare organisation with a key and a few receipts, committed for the server."""
    seed_catalogue()
    user = UserFactory.create()
    org = organization_create(name="St Mary's Clinic", owner=user, tier=tier_get(slug="healthcare"))
    key, _ = api_key_create(organization=org, created_by=user, name="triage bot")
    keyring.register()
    trace = Trace.objects.create(
        created_at=timezone.now(),
        organization=org,
        api_key=key,
        model="gpt-4o-mini",
        provider="openai",
        status="blocked",
        http_status=403,
        cost_eur=Decimal("0"),
    )
    rows = [
        receipt_make(org, api_key_id=key.pk, outcome="ALLOWED", policy_applied=[]),
        receipt_make(
            org,
            api_key_id=key.pk,
            trace_id=trace.public_id,
            policy_applied=["dosage-limit", "Größe-Limit"],
            cost_prevented_eur=0.000015,
            high_risk=True,
        ),
        receipt_make(org, outcome="SUPPRESSED", model="claude-haiku-5-5"),
    ]
    return user, rows


def _sign_in(window: Browser, live_server, user) -> None:
    client = Client()
    client.force_login(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    window.page.context.add_cookies(
        [{"name": settings.SESSION_COOKIE_NAME, "value": cookie, "url": live_server.url}]
    )


def test_receipts_pages(live_server, customer, browser, tmp_path, settings):  # noqa: F811
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = False
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for name in SHOTS:
        for suffix in ("", "-phone"):
            (SCREENSHOTS / f"{name}{suffix}.png").unlink(missing_ok=True)
    user, rows = customer
    try:
        _journey(browser, live_server, user, rows, tmp_path)
    except BaseException:
        with contextlib.suppress(Exception):
            browser.page.screenshot(path=SCREENSHOTS / "receipts-failure.png", full_page=True)
        raise
    for name in SHOTS:
        for suffix in ("", "-phone"):
            assert (SCREENSHOTS / f"{name}{suffix}.png").stat().st_size > 0
    assert not browser.problems, "the browser saw errors:\n" + "\n".join(browser.problems)


def _journey(window: Browser, live_server, user, rows, tmp_path) -> None:
    page = window.page
    _sign_in(window, live_server, user)
    page.goto(live_server.url + "/dashboard/")
    window.go("Receipts", "receipts/")

    # --- The list ------------------------------------------------------------------------------
    table_rows = page.locator('[data-testid="receipt-row"]')
    expect(table_rows).to_have_count(3)
    expect(table_rows.first).to_contain_text("claude-haiku-5-5")  # newest first
    expect(page.locator('[data-testid="issuer-key"]')).to_have_count(1)
    window.screenshot("receipts-list")

    # --- A filter --------------------------------------------------------------------------------
    page.get_by_text("Filter by date, outcome, model, key or high-risk").click()
    page.locator("select[name=high_risk]").select_option("true")
    page.locator('[data-testid="receipt-filters-apply"]').click()
    expect(page).to_have_url(re.compile(r"high_risk=true"))
    expect(table_rows).to_have_count(1)

    # --- The export of what is filtered, downloaded through its link ---------------------------
    with page.expect_download() as download:
        page.locator('[data-testid="export-link"]', has_text="JSON Lines").click()
    path = tmp_path / "receipts.jsonl"
    download.value.save_as(path)
    assert path.read_text(encoding="utf-8").splitlines() == [rows[1].document]

    # --- The detail, verified ------------------------------------------------------------------
    table_rows.first.get_by_role("link").click()
    expect(page).to_have_url(re.compile(rf"/dashboard/receipts/{rows[1].pk}/$"))
    facts = page.locator('[data-testid="receipt-facts"]')
    expect(facts).to_contain_text("€0.000015")
    expect(facts).to_contain_text("Größe-Limit")
    expect(page.locator('[data-testid="trace-link"]')).to_have_text(rows[1].trace_id)
    expect(page.locator('[data-testid="receipt-chain"]')).to_contain_text(rows[1].chain_hash)
    page.locator('[data-testid="verify-button"]').click()
    verdict = page.locator('[data-testid="receipt-verification"]')
    expect(verdict).to_have_attribute("data-valid", "true")
    expect(verdict).to_contain_text("Valid.")
    window.screenshot("receipts-detail")
    assert AuditEvent.objects.filter(action="receipt.verified").count() == 1

    # Reloading shows the receipt again; it does not post the verification a second time.
    page.reload()
    expect(page.locator('[data-testid="receipt-verification"]')).to_have_count(0)
    assert AuditEvent.objects.filter(action="receipt.verified").count() == 1
