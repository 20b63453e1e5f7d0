"""Receipts, chain heads and issuer keys in the admin: read-only, undeletable, searchable."""

from __future__ import annotations

import uuid

import pytest
from django.test import Client
from django.urls import reverse

from accounts.tests.factories import UserFactory
from healthcare import keyring
from healthcare.models import Receipt, ReceiptChain, ReceiptKey
from healthcare.tests.factories import receipt_make


def url(model, view: str, *args) -> str:
    return reverse(f"admin:healthcare_{model._meta.model_name}_{view}", args=args)


@pytest.fixture(autouse=True)
def _staff_mfa_off(settings):
    settings.AQTA_STAFF_REQUIRE_MFA = False


@pytest.fixture
def admin_client(client: Client, db) -> Client:
    client.force_login(UserFactory.create(is_staff=True, is_superuser=True))
    return client


@pytest.fixture
def stored(healthcare_org, other_org):
    keyring.register()
    return {
        "blocked": receipt_make(healthcare_org, outcome="BLOCKED"),
        "allowed": receipt_make(healthcare_org, outcome="ALLOWED", high_risk=True),
        "theirs": receipt_make(other_org, outcome="SUPPRESSED"),
    }


MODELS = [Receipt, ReceiptChain, ReceiptKey]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_pages_render_read_only(admin_client, stored, model):
    obj = model.objects.order_by("pk").first()
    assert admin_client.get(url(model, "changelist")).status_code == 200
    page = admin_client.get(url(model, "change", obj.pk))
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert "Delete" not in page.content.decode()


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_nothing_can_be_added_changed_or_deleted(admin_client, stored, model):
    obj = model.objects.order_by("pk").first()
    count = model.objects.count()
    assert admin_client.get(url(model, "add")).status_code == 403
    assert admin_client.post(url(model, "add"), {}).status_code == 403
    assert admin_client.post(url(model, "change", obj.pk), {}).status_code == 403
    assert admin_client.get(url(model, "delete", obj.pk)).status_code == 403
    assert admin_client.post(url(model, "delete", obj.pk), {"post": "yes"}).status_code == 403
    changelist = admin_client.get(url(model, "changelist"))
    assert changelist.context["action_form"] is None  # not even "Delete selected"
    admin_client.post(
        url(model, "changelist"),
        {"action": "delete_selected", "_selected_action": [obj.pk], "post": "yes"},
    )
    assert model.objects.count() == count


def test_the_change_page_shows_the_signed_document(admin_client, stored):
    row = stored["blocked"]
    page = admin_client.get(url(Receipt, "change", row.pk)).content.decode()
    assert row.chain_hash in page and row.attestation_id.hex[:8] in page
    assert "&quot;signature&quot;" in page  # the document, escaped


def _found(admin_client, term: str) -> set[int]:
    response = admin_client.get(url(Receipt, "changelist"), {"q": term})
    assert response.status_code == 200
    return {row.pk for row in response.context["cl"].result_list}


def test_search_by_trace_id_in_any_spelling(admin_client, stored):
    row = stored["blocked"]
    hex_digits = row.trace_id.removeprefix("tr_")
    dashed = str(uuid.UUID(hex_digits))
    for term in (row.trace_id, row.trace_id.upper(), hex_digits, dashed, f"  {row.trace_id} "):
        assert _found(admin_client, term) == {row.pk}, term


def test_search_by_attestation_id(admin_client, stored):
    row = stored["allowed"]
    assert _found(admin_client, str(row.attestation_id)) == {row.pk}
    assert _found(admin_client, row.attestation_id.hex) == {row.pk}


def test_search_by_organisation_and_nothing(admin_client, stored, other_org):
    assert _found(admin_client, "Globex") == {stored["theirs"].pk}
    assert _found(admin_client, "no such thing") == set()


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"outcome__exact": "ALLOWED"}, {"allowed"}),
        ({"high_risk__exact": "1"}, {"allowed"}),
        ({"high_risk__exact": "0"}, {"blocked", "theirs"}),
    ],
)
def test_filters(admin_client, stored, query, expected):
    response = admin_client.get(url(Receipt, "changelist"), query)
    rows = {row.pk for row in response.context["cl"].result_list}
    assert rows == {stored[name].pk for name in expected}


def test_filter_by_organisation(admin_client, stored, other_org):
    response = admin_client.get(
        url(Receipt, "changelist"), {"organization__id__exact": other_org.pk}
    )
    assert [row.pk for row in response.context["cl"].result_list] == [stored["theirs"].pk]
