"""The dashboard's Audit page in a real browser (Chromium through Playwright, like
``test_browser_e2e``): a Healthcare owner signs in, opens the trail, filters it, verifies
it intact, sees the break an attacker left, and downloads the export. Screenshots at
desktop and phone width go to ``artifacts/screenshots/audit-*.png``."""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from django.db import transaction
from playwright.sync_api import expect

from accounts.services import api_key_create, organization_create
from accounts.tests.factories import PASSWORD, UserFactory
from billing.selectors import tier_get
from compliance.checkpoints import checkpoint_run
from compliance.services import audit_event_record
from compliance.tests import tamper
from gateway.tests.conftest import LiveGateway, redis_url_for_tests, run_gateway, seed_catalogue
from healthcare.signing import b64url_encode, issuer_key
from tests import test_browser_e2e as e2e
from tests.test_browser_e2e import SCREENSHOTS, Browser

# The end-to-end test's fixtures, used here by name.
chromium, static_root, mock_provider = e2e.chromium, e2e.static_root, e2e.mock_provider
committed, browser = e2e.committed, e2e.browser

NAMES = ("audit-trail", "audit-verified", "audit-broken")


def _seed() -> str:
    raw = issuer_key().private_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return b64url_encode(raw)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("checkpoints")


@pytest.fixture(scope="module")
def live(
    chromium, static_root, django_db_setup, django_db_blocker, mock_provider, store
) -> Iterator[LiveGateway]:
    """A live gateway that signs and reads checkpoints as this process does: the same
    issuer key, the same checkpoint store."""
    with django_db_blocker.unblock():
        seed_catalogue()
    with run_gateway(
        mock_provider,
        redis_url=redis_url_for_tests(),
        STATIC_ROOT=str(static_root),
        SESSION_COOKIE_SECURE="false",
        CSRF_COOKIE_SECURE="false",
        AQTA_STAFF_REQUIRE_MFA="false",
        AQTA_RECEIPT_SIGNING_KEY=_seed(),
        AQTA_CHECKPOINT_DIR=str(store),
    ) as gateway:
        yield gateway


def test_the_audit_page(live, committed, browser, store, settings):
    settings.AQTA_CHECKPOINT_DIR = str(store)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    (SCREENSHOTS / "audit-failure.png").unlink(missing_ok=True)
    for name in NAMES:
        for suffix in ("", "-phone"):
            (SCREENSHOTS / f"{name}{suffix}.png").unlink(missing_ok=True)
    try:
        _journey(live, browser)
    except BaseException:
        with contextlib.suppress(Exception):
            browser.page.screenshot(path=SCREENSHOTS / "audit-failure.png", full_page=True)
        raise
    for name in NAMES:
        for suffix in ("", "-phone"):
            shot = SCREENSHOTS / f"{name}{suffix}.png"
            assert shot.is_file() and shot.stat().st_size > 0, f"missing screenshot {shot}"
    assert not browser.problems, "the browser saw errors:\n" + "\n".join(browser.problems)


def _clinic() -> tuple[str, str]:
    owner = UserFactory.create(email=f"audit-{uuid.uuid4().hex[:8]}@example.com")
    clinic = organization_create(
        name="St Mary's Clinic", owner=owner, tier=tier_get(slug="healthcare")
    )
    api_key_create(
        organization=clinic, created_by=owner, name="triage assistant", actor_label=owner.email
    )
    for setting, value in (("content_logging", "False"), ("retention_days", "2190")):
        audit_event_record(
            action="organization.updated",
            organization=clinic,
            actor=owner,
            target=str(clinic.pk),
            data={setting: value},
        )
    audit_event_record(
        action="data.exported",
        organization=clinic,
        actor=owner,
        target="analytics.requests",
        data={"kind": "analytics.requests", "params": {"format": "csv"}, "rows": 120},
    )
    checkpoint_run()
    return owner.email, str(clinic.pk)


def _journey(live: LiveGateway, window: Browser) -> None:
    email, scope = _clinic()
    page = window.page

    page.goto(live.url + "/accounts/login/")
    page.locator('#login-form input[name="login"]').fill(email)
    page.locator('#login-form input[name="password"]').fill(PASSWORD)
    page.locator("#login-submit").click()
    expect(page).to_have_url(re.compile(r"/dashboard/$"))

    # --- The trail ---------------------------------------------------------------------------
    window.go("Audit", "audit/")
    rows = page.locator('[data-testid="audit-row"]')
    expect(rows.first).to_have_attribute("data-action", "data.exported")
    count = rows.count()
    assert count >= 5
    expect(page.locator('[data-testid="audit-count"]')).to_contain_text(f"{count} events")
    window.screenshot("audit-trail")

    # --- A filter ----------------------------------------------------------------------------
    page.locator("summary").click()
    page.locator('#audit-filters input[name="action"]').fill("organization.*")
    page.locator('[data-testid="audit-filters-apply"]').click()
    expect(rows).to_have_count(3)  # created, and the two settings changes
    csv_link = page.locator('[data-testid="audit-export-csv"]')
    expect(csv_link).to_have_attribute("href", re.compile(r"action=organization\.(\*|%2A)"))

    # --- The export --------------------------------------------------------------------------
    with page.expect_download() as download:
        csv_link.click()
    lines = Path(download.value.path()).read_text().splitlines()
    assert lines[0].startswith("scope,sequence,created_at,action")
    assert [line.split(",")[3] for line in lines[1:]] == ["organization.created"] + [
        "organization.updated"
    ] * 2

    # --- Verify: intact ----------------------------------------------------------------------
    page.locator("#audit-verify-submit").click()
    report = page.locator('[data-testid="chain-report"][data-kind="audit"]')
    expect(report).to_have_attribute("data-valid", "true")
    expect(report).to_contain_text("Intact")
    expect(report).to_contain_text("newest signed checkpoint")
    window.screenshot("audit-verified")

    # --- Someone edits an event in the database and hashes the chain again ------------------
    with transaction.atomic():
        tamper.edit_event(scope, 3, data={"content_logging": "True"})
        tamper.rehash_chain(scope)
    page.locator("#audit-verify-submit").click()
    expect(report).to_have_attribute("data-valid", "false")
    expect(report).to_contain_text("Broken")
    expect(report.locator('[data-testid="break-reason"]')).to_contain_text("rewritten")
    window.screenshot("audit-broken")
