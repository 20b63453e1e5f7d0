"""/api/health/receipts: tier and authentication, the list and the detail."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from compliance.models import AuditEvent
from gateway.models import Trace
from healthcare.models import Receipt
from healthcare.tests.factories import WHEN, raw_sql, receipt_make

LIST = "/api/health/receipts"


def detail(ref) -> str:
    return f"{LIST}/{ref}"


def error(response):
    return response.json()["error"]


# --- Tier and authentication -----------------------------------------------------------------


def _calls(receipt_id):
    return [
        ("get", LIST),
        ("get", detail(receipt_id)),
        ("post", detail(receipt_id) + "/verify"),
        ("post", LIST + "/verify"),
        ("get", LIST + "/export?format=csv"),
    ]


def test_every_endpoint_refuses_a_pro_organisation_naming_the_healthcare_tier(org, key_client):
    row = receipt_make(org)
    for method, url in _calls(row.pk):
        response = (
            getattr(key_client, method)(url, format="json")
            if method == "post"
            else (key_client.get(url))
        )
        assert response.status_code == 403, url
        assert error(response)["code"] == "tier_feature_unavailable"
        assert "Healthcare tier" in error(response)["message"]
        assert "Pro" in error(response)["message"]
    assert not AuditEvent.objects.filter(action__startswith="receipt.").exists()


def test_every_endpoint_needs_authentication(healthcare_org, api_client):
    row = receipt_make(healthcare_org)
    for method, url in _calls(row.pk):
        response = getattr(api_client, method)(url)
        assert response.status_code == 401, url
        assert error(response)["code"] == "not_authenticated"


def test_the_session_works_and_its_writes_need_csrf(healthcare_org, session_client):
    row = receipt_make(healthcare_org)
    assert session_client.get(LIST).status_code == 200
    refused = session_client.post(detail(row.pk) + "/verify")
    assert refused.status_code == 403
    assert error(refused)["code"] == "csrf_failed"
    session_client.get("/dashboard/")  # sets the CSRF cookie
    token = session_client.cookies["csrftoken"].value
    accepted = session_client.post(detail(row.pk) + "/verify", HTTP_X_CSRFTOKEN=token)
    assert accepted.status_code == 200
    assert accepted.json()["valid"] is True


# --- List ------------------------------------------------------------------------------------


def test_the_list_is_newest_first_with_every_field(healthcare_org, key_client, api_key):
    key = api_key[0]
    first = receipt_make(healthcare_org, timestamp=WHEN, api_key_id=key.pk)
    second = receipt_make(
        healthcare_org, timestamp=WHEN + timedelta(seconds=1), outcome="ALLOWED", high_risk=True
    )

    body = key_client.get(LIST).json()

    assert body["object"] == "list" and body["has_more"] is False and body["next"] is None
    assert [item["id"] for item in body["data"]] == [second.pk, first.pk]
    assert body["data"][1] == {
        "id": first.pk,
        "attestation_id": str(first.attestation_id),
        "trace_id": first.trace_id,
        "outcome": "BLOCKED",
        "model": "gpt-4o-mini",
        "api_key": str(key.pk),
        "high_risk": False,
        "issued_at": "2026-04-23T10:15:30.123456Z",
        "sequence": 1,
    }
    assert body["data"][0]["high_risk"] is True and body["data"][0]["sequence"] == 2


def test_the_list_links_the_chain_before_reading(healthcare_org, key_client):
    receipt_make(healthcare_org, link=False)
    receipt_make(healthcare_org, link=False)
    assert Receipt.objects.filter(sequence__isnull=True).count() == 2

    body = key_client.get(LIST).json()

    assert sorted(item["sequence"] for item in body["data"]) == [1, 2]


def test_the_list_shows_only_the_callers_organisation(healthcare_org, other_org, key_client):
    mine = receipt_make(healthcare_org)
    receipt_make(other_org)
    assert [item["id"] for item in key_client.get(LIST).json()["data"]] == [mine.pk]


@pytest.fixture
def assorted(healthcare_org, api_key):
    key = api_key[0].pk
    return {
        "old": receipt_make(healthcare_org, timestamp=WHEN - timedelta(days=3)),
        "allowed": receipt_make(healthcare_org, timestamp=WHEN, outcome="ALLOWED"),
        "keyed": receipt_make(healthcare_org, timestamp=WHEN, api_key_id=key, model="gpt-4o"),
        "risky": receipt_make(
            healthcare_org,
            timestamp=WHEN + timedelta(hours=1),
            high_risk=True,
            outcome="SUPPRESSED",
        ),
    }


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"outcome": "ALLOWED"}, {"allowed"}),
        ({"outcome": "SUPPRESSED"}, {"risky"}),
        ({"model": "gpt-4o"}, {"keyed"}),
        ({"high_risk": "true"}, {"risky"}),
        ({"high_risk": "false"}, {"old", "allowed", "keyed"}),
        ({"start": "2026-04-23"}, {"allowed", "keyed", "risky"}),
        ({"end": "2026-04-22"}, {"old"}),
        ({"start": "2026-04-23T11:00:00Z", "end": "2026-04-24"}, {"risky"}),
        ({"outcome": "BLOCKED", "high_risk": "false"}, {"old", "keyed"}),
        ({"high_risk": ""}, {"old", "allowed", "keyed", "risky"}),  # empty: no filter
    ],
)
def test_filters(assorted, key_client, params, expected):
    body = key_client.get(LIST, params).json()
    names = {name for name, row in assorted.items() if row.pk in {i["id"] for i in body["data"]}}
    assert names == expected


def test_the_key_filter(assorted, key_client, api_key):
    body = key_client.get(LIST, {"key": str(api_key[0].pk)}).json()
    assert [item["id"] for item in body["data"]] == [assorted["keyed"].pk]
    assert key_client.get(LIST, {"key": str(uuid.uuid4())}).json()["data"] == []


def test_cursor_pages_cover_everything_once_even_with_equal_times(healthcare_org, key_client):
    rows = [receipt_make(healthcare_org, timestamp=WHEN) for _ in range(5)]
    rows.append(receipt_make(healthcare_org, timestamp=WHEN - timedelta(seconds=1)))
    seen: list[int] = []
    url: str | None = f"{LIST}?limit=2"
    pages = 0
    while url:
        body = key_client.get(url).json()
        seen += [item["id"] for item in body["data"]]
        assert body["has_more"] is (body["next"] is not None)
        url = body["next"]
        pages += 1
    assert pages == 3
    assert seen == [*sorted((r.pk for r in rows[:5]), reverse=True), rows[5].pk]


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"outcome": "PASSED"}, "outcome"),
        ({"outcome": ["x"] * 3}, "outcome"),
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "garbage"}, "cursor"),
        ({"cursor": "MjAyNnwx"}, "cursor"),  # "2026|1": no offset
        ({"start": "yesterday"}, "start"),
        ({"start": "2026-04-24", "end": "2026-04-23"}, "start"),
        ({"key": "not-a-uuid"}, "key"),
        ({"high_risk": "maybe"}, "high_risk"),
        ({"model": "a\x00b"}, "model"),
        ({"model": "m" * 10_000}, "model"),
        ({"start": "99999-01-01"}, "start"),
    ],
)
def test_bad_parameters_are_a_400_naming_them(healthcare_org, key_client, params, param):
    response = key_client.get(LIST, params)
    assert response.status_code == 400, response.content
    assert error(response)["param"] == param
    assert error(response)["code"] == "invalid_parameter"


# --- Detail ----------------------------------------------------------------------------------


def test_detail_returns_the_stored_receipt_byte_for_byte(healthcare_org, key_client):
    row = receipt_make(
        healthcare_org, cost_prevented_eur=0.000015, policy_applied=["Größe-Limit", "données"]
    )

    response = key_client.get(detail(row.pk))

    assert response.status_code == 200
    raw = response.content.decode("utf-8")
    assert f'"receipt":{row.document},' in raw  # verbatim, not re-serialised
    assert '"cost_prevented_eur":0.000015' in raw and "1.5e-05" not in raw
    assert "Größe-Limit" in raw  # UTF-8 as signed, not \u escapes
    body = response.json()
    assert body["receipt"] == json.loads(row.document)
    assert body["chain"] == {
        "sequence": row.sequence,
        "prev_hash": row.prev_hash,
        "chain_hash": row.chain_hash,
    }
    assert body["document_error"] is None
    assert body["key_id"] == row.key_id
    assert body["verify_url"] == f"/api/health/receipts/{row.pk}/verify"


def test_detail_by_attestation_id_in_either_spelling(healthcare_org, key_client):
    row = receipt_make(healthcare_org)
    for ref in (str(row.attestation_id), row.attestation_id.hex, str(row.attestation_id).upper()):
        assert key_client.get(detail(ref)).json()["id"] == row.pk


def test_detail_links_the_trace(healthcare_org, key_client, api_key):
    trace = Trace.objects.create(
        created_at=timezone.now(),
        organization=healthcare_org,
        api_key=api_key[0],
        model="gpt-4o-mini",
        provider="openai",
        status="blocked",
        http_status=403,
        cost_eur=Decimal("0"),
    )
    row = receipt_make(healthcare_org, trace_id=trace.public_id)
    orphan = receipt_make(healthcare_org)

    linked = key_client.get(detail(row.pk)).json()["trace"]
    assert linked["id"] == trace.public_id
    assert linked["dashboard_url"] == f"/dashboard/traces/{trace.public_id}/"
    assert linked["analytics"]["id"] == trace.public_id
    assert linked["analytics"]["status"] == "blocked"
    unlinked = key_client.get(detail(orphan.pk)).json()["trace"]
    assert unlinked["id"] == orphan.trace_id and unlinked["analytics"] is None


@pytest.mark.parametrize(
    "ref", ["0", "-1", "abc", "99999999999999999999999", "1.5", " ", "%00", "x" * 5000]
)
def test_unknown_references_are_404(healthcare_org, key_client, ref):
    receipt_make(healthcare_org)
    response = key_client.get(detail(ref))
    assert response.status_code == 404
    assert error(response)["code"] == "not_found"


def test_another_organisations_receipt_is_404_everywhere(healthcare_org, other_org, key_client):
    theirs = receipt_make(other_org)
    for ref in (theirs.pk, theirs.attestation_id):
        assert key_client.get(detail(ref)).status_code == 404
        assert key_client.post(detail(ref) + "/verify").status_code == 404
    assert not AuditEvent.objects.filter(action="receipt.verified").exists()


def test_detail_of_a_corrupted_row_is_not_an_error(healthcare_org, key_client):
    row = receipt_make(healthcare_org)
    raw_sql("UPDATE healthcare_receipt SET document = %s WHERE id = %s", ["{not json", row.pk])

    response = key_client.get(detail(row.pk))

    assert response.status_code == 200
    body = response.json()
    assert body["receipt"] is None
    assert body["document_error"] == "the stored document is not JSON"
