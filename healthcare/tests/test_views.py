"""The dashboard's Receipts pages."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from compliance.models import AuditEvent
from healthcare import keyring
from healthcare.tests.factories import raw_sql, receipt_make

PAGE = "/dashboard/receipts/"


@pytest.fixture
def browser(user) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def csrf(client: Client, url: str) -> str:
    page = client.get(url)
    assert page.status_code == 200
    return client.cookies["csrftoken"].value


def test_the_nav_link_shows_only_for_tiers_with_receipts(org, browser):
    assert 'data-testid="nav-receipts"' not in browser.get("/dashboard/").content.decode()
    from billing.selectors import tier_get

    org.tier = tier_get(slug="healthcare")
    org.save()
    assert 'data-testid="nav-receipts"' in browser.get("/dashboard/").content.decode()


def test_other_tiers_see_not_allowed_naming_the_healthcare_tier(org, browser):
    row = receipt_make(org)
    for url in (PAGE, f"{PAGE}{row.pk}/", f"{PAGE}{row.pk}/receipt.json"):
        response = browser.get(url)
        assert response.status_code == 403, url
        assert "Healthcare tier" in response.content.decode()


def test_the_list_with_filters_and_export_links(healthcare_org, browser, api_key):
    keyring.register()
    blocked = receipt_make(healthcare_org, api_key_id=api_key[0].pk)
    allowed = receipt_make(healthcare_org, outcome="ALLOWED", high_risk=True)

    html = browser.get(PAGE).content.decode()
    assert f'data-receipt-id="{blocked.pk}"' in html and f'data-receipt-id="{allowed.pk}"' in html
    assert "test key" in html  # the key's name
    assert "/api/health/receipts/export?format=jsonl" in html
    assert 'data-testid="issuer-key"' in html and keyring.published()["public_key"] in html

    filtered = browser.get(PAGE, {"outcome": "ALLOWED", "high_risk": "true"}).content.decode()
    assert f'data-receipt-id="{allowed.pk}"' in filtered
    assert f'data-receipt-id="{blocked.pk}"' not in filtered
    assert "format=csv&amp;outcome=ALLOWED&amp;high_risk=true" in filtered

    none = browser.get(PAGE, {"outcome": "SUPPRESSED"}).content.decode()
    assert 'data-testid="receipts-empty-filtered"' in none


def test_bad_filters_are_shown_not_raised(healthcare_org, browser):
    receipt_make(healthcare_org)
    response = browser.get(PAGE, {"start": "soon", "outcome": "PASSED", "model": "x" * 600})
    assert response.status_code == 200
    assert 'data-testid="form-errors"' in response.content.decode()


def test_an_empty_list(healthcare_org, browser):
    assert 'data-testid="receipts-empty"' in browser.get(PAGE).content.decode()


def test_the_detail_shows_the_signed_json_and_the_chain(healthcare_org, browser):
    row = receipt_make(healthcare_org, cost_prevented_eur=0.000015, policy_applied=["données"])

    html = browser.get(f"{PAGE}{row.pk}/").content.decode()

    assert row.chain_hash in html and row.prev_hash in html
    assert "&quot;cost_prevented_eur&quot;: 0.000015" in html  # the readable copy, as signed
    assert "€0.000015" in html and "données" in html
    assert json.loads(row.document)["signature"] in html
    assert 'id="verify-button"' in html and "csrfmiddlewaretoken" in html
    assert browser.get(f"{PAGE}{row.attestation_id}/").status_code == 200


def test_verify_needs_csrf_then_shows_the_verdict_and_audits_it(healthcare_org, browser, user):
    row = receipt_make(healthcare_org)
    url = f"{PAGE}{row.pk}/"
    assert browser.post(url).status_code == 403  # no CSRF token
    token = csrf(browser, url)

    html = browser.post(url, {"csrfmiddlewaretoken": token}).content.decode()

    assert 'data-valid="true"' in html and "Valid." in html
    event = AuditEvent.objects.get(action="receipt.verified")
    assert event.actor == user and event.target == str(row.pk)


def test_verify_a_corrupted_receipt_shows_why(healthcare_org, browser):
    row = receipt_make(healthcare_org)
    raw_sql("UPDATE healthcare_receipt SET document = %s WHERE id = %s", ["[1]", row.pk])
    url = f"{PAGE}{row.pk}/"
    token = csrf(browser, url)

    html = browser.post(url, {"csrfmiddlewaretoken": token}).content.decode()

    assert 'data-valid="false"' in html and "not a JSON object" in html
    assert 'data-testid="document-error"' in html


def test_the_download_is_the_exact_document(healthcare_org, browser):
    row = receipt_make(healthcare_org, policy_applied=["Größe"])
    response = browser.get(f"{PAGE}{row.pk}/receipt.json")
    assert response.status_code == 200
    assert response.content == row.document.encode("utf-8")
    assert response["Content-Disposition"] == (
        f'attachment; filename="receipt-{row.attestation_id}.json"'
    )


def test_another_organisations_receipt_is_404(healthcare_org, other_org, browser):
    theirs = receipt_make(other_org)
    for url in (f"{PAGE}{theirs.pk}/", f"{PAGE}{theirs.attestation_id}/receipt.json", f"{PAGE}x/"):
        assert browser.get(url).status_code == 404
