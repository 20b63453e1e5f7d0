"""End to end, in a real browser: Playwright drives Debian's Chromium against a live Aqta
(the production ASGI app under uvicorn, sharing the test database) in front of the mock
provider.

One customer journey: sign up → create a key in the dashboard → call ``/v1`` with it
through the OpenAI SDK → see the call and its cost on the usage and traces pages → revoke
the key through the UI → the SDK gets 401. Full-page screenshots of the main pages, at
desktop and phone width, go to ``artifacts/screenshots/`` (gitignored; CI keeps them).

Chromium comes from Debian (``apt-get install chromium``), never Playwright's download.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import openai
import pytest
from django.db import connections
from django.db.models import Sum
from playwright.sync_api import ViewportSize, expect, sync_playwright

from accounts.templatetags.aqta_format import eur_format
from gateway.mock_provider import MockConfig, MockServer
from gateway.tests.conftest import (
    LiveGateway,
    drain_traces,
    redis_url_for_tests,
    run_gateway,
    seed_catalogue,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 375, "height": 812}
TIMEOUT_MS = 10_000
# Screenshot names, each at desktop width and as `<name>-phone.png`.
PAGES = (
    "signup",
    "overview",
    "keys",
    "key-revoke",
    "usage",
    "traces",
    "trace-detail",
    "settings",
    "members",
)
# The mock answers with this many completion tokens (one per streamed piece): at
# gpt-4o-mini's list price that is just under one euro cent, so the usage page's total
# (two decimals) shows a non-zero cost for the single call.
COMPLETION_TOKENS = 16_000

# Screenshots must show finished charts: turn Chart.js animations off as the library
# loads (its UMD bundle assigns `window.Chart`), instead of waiting for them to end.
NO_CHART_ANIMATION = """
(() => {
  let chart;
  Object.defineProperty(window, "Chart", {
    configurable: true,
    get() { return chart; },
    set(value) {
      chart = value;
      try { value.defaults.animation = false; } catch (error) { /* not Chart.js */ }
    },
  });
})();
"""
CHARTS_DRAWN = "ids => window.Chart && ids.every(id => Chart.getChart(document.getElementById(id)))"
# Resolves after two frames have been drawn (a viewport change re-lays out the page).
NEXT_FRAMES = "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"
CHART_IDS = ("chart-requests", "chart-tokens", "chart-cost", "chart-cost-by-model")


def _chromium() -> str:
    if CHROMIUM.exists():
        return str(CHROMIUM)
    if os.environ.get("CI") == "true":
        pytest.fail(
            f"Chromium is not installed at {CHROMIUM}: CI must install Debian's chromium "
            "package (apt-get install chromium) before the browser tests."
        )
    pytest.skip("Chromium not installed: apt-get install chromium")


def floatformat(value: Decimal, places: int) -> str:
    """Django's ``floatformat:places`` of a Decimal (round half up), as the pages show it."""
    return str(value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))


@pytest.fixture(scope="module")
def chromium() -> str:
    return _chromium()


@pytest.fixture(scope="module")
def mock_provider() -> Iterator[MockServer]:
    with MockServer(MockConfig(chunks=5)) as server:
        yield server


@pytest.fixture(scope="module")
def static_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The live server serves static files from the hashed manifest, as in production:
    collect the current ones into a directory of this run (a stale `staticfiles/` would
    make every page that names a new file fail)."""
    root = tmp_path_factory.mktemp("static")
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=ROOT,
        env={**os.environ, "STATIC_ROOT": str(root)},
        check=True,
        timeout=300,
    )
    return root


@pytest.fixture(scope="module")
def live(
    chromium, static_root, django_db_setup, django_db_blocker, mock_provider
) -> Iterator[LiveGateway]:
    """A live gateway on plain http (secure cookies off, no staff MFA)."""
    with django_db_blocker.unblock():
        seed_catalogue()  # before start-up: the server loads the catalogue once
    with run_gateway(
        mock_provider,
        redis_url=redis_url_for_tests(),
        STATIC_ROOT=str(static_root),
        SESSION_COOKIE_SECURE="false",
        CSRF_COOKIE_SECURE="false",
        AQTA_STAFF_REQUIRE_MFA="false",
    ) as gateway:
        yield gateway


@pytest.fixture
def committed(transactional_db) -> Iterator[None]:
    """Committed data the live server sees; its buffered traces are written before the
    database is flushed (on PostgreSQL the flush and the flusher would deadlock)."""
    seed_catalogue()
    yield
    drain_traces()


class Browser:
    """One Chromium page with a fresh profile, and what went wrong in it."""

    def __init__(self, page) -> None:
        self.page = page
        self.problems: list[str] = []
        page.on("pageerror", lambda error: self.problems.append(f"JS error: {error}"))
        page.on(
            "console",
            lambda message: (
                self.problems.append(f"console {message.type}: {message.text} ({page.url})")
                if message.type == "error"
                else None
            ),
        )
        page.on(
            "response",
            lambda response: (
                self.problems.append(f"HTTP {response.status}: {response.url}")
                if response.status >= 400
                else None
            ),
        )

    def screenshot(self, name: str) -> None:
        """Full-page screenshots at desktop and phone width."""
        page = self.page
        for suffix, size in (("", DESKTOP), ("-phone", PHONE)):
            page.set_viewport_size(size)
            # Let responsive content (the charts) re-lay out for the new width.
            page.evaluate(NEXT_FRAMES)
            page.screenshot(path=SCREENSHOTS / f"{name}{suffix}.png", full_page=True)
        page.set_viewport_size(DESKTOP)

    def go(self, tab: str, url_part: str) -> None:
        """Open a dashboard section through its tab."""
        nav = self.page.get_by_role("navigation", name="Dashboard sections")
        nav.get_by_role("link", name=tab, exact=True).click()
        expect(self.page).to_have_url(re.compile(rf"/dashboard/{url_part}$"))


@pytest.fixture
def browser(chromium, tmp_path, monkeypatch) -> Iterator[Browser]:
    # Playwright's sync API keeps an event loop running in this thread, so Django takes
    # the test's ORM calls for async code. They are plain synchronous code between browser
    # steps (never inside Playwright callbacks): allow them, for this test only.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport=DESKTOP,
            locale="en-GB",
            timezone_id="UTC",
        )
        try:
            context.set_default_timeout(TIMEOUT_MS)
            context.set_default_navigation_timeout(TIMEOUT_MS)
            context.add_init_script(NO_CHART_ANIMATION)
            page = context.pages[0] if context.pages else context.new_page()
            yield Browser(page)
        finally:
            # While Playwright runs, this thread has a running event loop, so Django gave
            # the test body connections of their own (asgiref: per context, not per
            # thread): close them here, or a pooled PostgreSQL connection stays checked
            # out and the test database cannot be dropped.
            connections.close_all()
            context.close()


def test_signup_key_call_usage_traces_revoke(live, committed, browser):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for shot in [SCREENSHOTS / "failure.png", *_screenshot_paths()]:
        shot.unlink(missing_ok=True)
    try:
        _journey(live, browser)
    except BaseException:
        with contextlib.suppress(Exception):  # where it stopped, for the CI artifacts
            browser.page.screenshot(path=SCREENSHOTS / "failure.png", full_page=True)
        raise
    for shot in _screenshot_paths():
        assert shot.is_file() and shot.stat().st_size > 0, f"missing screenshot {shot}"
    assert not browser.problems, "the browser saw errors:\n" + "\n".join(browser.problems)


def _screenshot_paths() -> list[Path]:
    return [SCREENSHOTS / f"{name}{suffix}.png" for name in PAGES for suffix in ("", "-phone")]


def _journey(live: LiveGateway, browser: Browser) -> None:
    from gateway.analytics.rollups import rollups_refresh
    from gateway.models import Trace, UsageCounter

    page = browser.page

    # --- Sign up ---------------------------------------------------------------------------
    email = f"e2e-{uuid.uuid4().hex[:10]}@example.com"
    page.goto(live.url + "/accounts/signup/")
    form = page.locator("#signup-form")
    expect(form).to_be_visible()
    browser.screenshot("signup")
    form.locator('input[name="email"]').fill(email)
    form.locator('input[name="password1"]').fill("Browser-e2e-Passw0rd!")
    page.locator("#signup-submit").click()

    # --- Lands on the dashboard ------------------------------------------------------------
    expect(page).to_have_url(re.compile(r"/dashboard/$"))
    expect(page.get_by_role("navigation", name="Dashboard sections")).to_be_visible()
    expect(page.locator("header.top")).to_contain_text(email)

    # --- Create a key ----------------------------------------------------------------------
    browser.go("API keys", "keys/")
    expect(page.locator('[data-testid="keys-empty"]')).to_be_visible()
    create = page.locator("#create-key-form")
    create.locator('input[name="name"]').fill("browser e2e")
    page.locator("#create-key-submit").click()
    secret_element = page.locator("#new-key-secret")
    expect(secret_element).to_have_text(re.compile(r"^\s*sk-aqta-\S+\s*$"))
    secret = secret_element.inner_text().strip()
    rows = page.locator('[data-testid="key-row"]')
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-key-status", "active")
    expect(rows.first).to_contain_text(secret[-4:])
    browser.screenshot("keys")

    # --- Call /v1 with it through the OpenAI SDK ---------------------------------------------
    client = openai.OpenAI(base_url=live.base_url, api_key=secret, max_retries=0, timeout=30)
    reply = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            {"role": "user", "content": f"Hello from a browser. mock:chunks={COMPLETION_TOKENS}"}
        ],
    )
    assert reply.choices[0].message.content
    assert reply.usage is not None
    assert reply.usage.completion_tokens == COMPLETION_TOKENS
    assert reply.model_extra is not None
    aqta = reply.model_extra["aqta"]
    assert aqta["status"] == "passed"
    assert isinstance(aqta["cost_eur"], float)  # a JSON number, as documented
    cost = Decimal(str(aqta["cost_eur"]))
    assert cost > 0
    trace_id = aqta["trace_id"]  # tr_ + 32 hex digits, as the pages spell it too
    assert re.fullmatch(r"tr_[0-9a-f]{32}", trace_id)

    # Traces are written asynchronously; then summarise them, as the beat task would.
    trace = wait_for(lambda: Trace.objects.filter(pk=trace_id).first(), timeout=15)
    assert trace is not None, "the call's trace was never written"
    assert trace.cost_eur == cost
    counted = wait_for(
        lambda: (
            UsageCounter.objects.filter(organization_id=trace.organization_id).aggregate(
                n=Sum("requests")
            )["n"]
            == 1
        ),
        timeout=15,
    )
    assert counted, "the monthly usage counter never counted the call"
    rollups_refresh()

    # --- Overview ------------------------------------------------------------------------------
    browser.go("Overview", "")
    expect(page.locator("#quota-status .value")).to_have_text("1")
    expect(page.locator("#budget-status .value")).to_have_text(f"€{eur_format(cost)}")
    browser.screenshot("overview")

    # --- Usage: the call and its cost ----------------------------------------------------------
    browser.go("Usage", "usage/")
    expect(page.locator("#usage-total-requests")).to_have_text("1")
    expect(page.locator("#usage-total-cost")).to_have_text(f"€{eur_format(cost)}")
    expect(page.locator("#usage-total-errors")).to_have_text("0")
    by_model = page.locator("#usage-by-model tbody tr")
    expect(by_model).to_have_count(1)
    expect(by_model.first).to_contain_text(f"€{eur_format(cost)}")
    by_key = page.locator("#usage-by-key tbody tr")
    expect(by_key).to_have_count(1)
    expect(by_key.first).to_contain_text("browser e2e")
    expect(page.locator("#charts-error")).to_be_hidden()
    page.wait_for_function(CHARTS_DRAWN, arg=list(CHART_IDS))
    browser.screenshot("usage")

    # --- Traces: the call, then its detail -----------------------------------------------------
    browser.go("Traces", "traces/")
    row = page.locator(f'[data-testid="trace-row"][data-trace-id="{trace_id}"]')
    expect(page.locator('[data-testid="trace-row"]')).to_have_count(1)
    expect(row).to_contain_text("gpt-4o-mini")
    expect(row).to_contain_text("browser e2e")
    expect(row).to_contain_text(f"€{floatformat(cost, 6)}")
    browser.screenshot("traces")
    row.get_by_role("link").first.click()
    expect(page).to_have_url(re.compile(rf"/dashboard/traces/{trace_id}/$"))
    facts = page.locator('[data-testid="trace-facts"]')
    expect(facts).to_contain_text("gpt-4o-mini")
    expect(facts).to_contain_text(f"€{floatformat(cost, 8)}")
    expect(facts).to_contain_text(f"{COMPLETION_TOKENS:,} completion")
    browser.screenshot("trace-detail")

    # --- Settings and members ------------------------------------------------------------------
    browser.go("Settings", "settings/")
    expect(page.locator("h1")).to_have_text("Settings")
    browser.screenshot("settings")
    browser.go("Members", "members/")
    members = page.locator('[data-testid="member-row"]')
    expect(members).to_have_count(1)
    expect(members.first).to_contain_text(email)
    browser.screenshot("members")

    # --- Revoke the key through the UI, with its confirmation -----------------------------------
    browser.go("API keys", "keys/")
    expect(page.locator("#new-key-secret")).to_have_count(0)  # shown once only
    rows.first.locator('[data-testid="key-revoke"]').click()
    expect(page).to_have_url(re.compile(r"/dashboard/keys/[0-9a-f-]+/revoke/$"))
    confirm = page.locator("#confirm-revoke")
    expect(confirm).to_be_visible()
    browser.screenshot("key-revoke")
    confirm.click()
    expect(page).to_have_url(re.compile(r"/dashboard/keys/$"))
    expect(page.locator('[data-testid="messages"]')).to_contain_text("Revoked")
    expect(rows.first).to_have_attribute("data-key-status", "revoked")
    expect(rows.first.locator('[data-testid="key-revoke"]')).to_have_count(0)

    # --- The SDK now gets 401 (revocation reaches every worker within a second) ---------------
    deadline = time.monotonic() + 2
    while True:
        try:
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "Still there?"}]
            )
        except openai.AuthenticationError as error:
            assert error.status_code == 401
            assert error.code == "invalid_api_key"
            break
        assert time.monotonic() < deadline, "the revoked key still worked after 2 s"
        time.sleep(0.1)
