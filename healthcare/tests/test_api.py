"""/api/health/receipts: list, detail, verification of stored and submitted receipts."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import DataError, connection, transaction
from django.utils import timezone

from compliance.models import AuditEvent
from gateway.models import Trace
from healthcare.models import Receipt
from healthcare.signing import IssuerKey
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


# --- Verify a stored receipt -----------------------------------------------------------------


def test_verify_a_valid_receipt_and_audit_it(healthcare_org, key_client, api_key):
    row = receipt_make(healthcare_org)

    response = key_client.post(detail(row.pk) + "/verify")

    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "receipt.verification"
    assert body["valid"] is True and body["reason"] == ""
    assert body["signature_valid"] is True and body["chain_valid"] is True
    assert body["sequence"] == 1 and body["id"] == row.pk
    event = AuditEvent.objects.get(action="receipt.verified")
    assert event.organization == healthcare_org
    assert event.target == str(row.pk)
    assert event.actor_label == f"api_key:{api_key[0].masked}"
    assert event.data["valid"] is True and event.data["attestation_id"] == str(row.attestation_id)


def test_verify_links_an_unlinked_receipt_first(healthcare_org, key_client):
    row = receipt_make(healthcare_org, link=False)
    body = key_client.post(detail(row.pk) + "/verify").json()
    assert body["valid"] is True and body["sequence"] == 1


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


CORRUPT_DOCUMENTS = [
    ("not JSON", "{not json", "the stored document is not JSON"),
    ("a list", "[1, 2]", "not a JSON object"),
    ("null", "null", "not a JSON object"),
    ("a string", '"receipt"', "not a JSON object"),
    ("empty", "", "the stored document is not JSON"),
    ("deeply nested", _nested(100_000), "nested too deeply"),
    ("nested object", '{"a":' * 50_000 + "1" + "}" * 50_000, "nested too deeply"),
    ("huge", json.dumps({"v": 1, "model": "m" * 3_000_000}), "missing field"),
    ("escaped NUL", '{"v":1,"model":"a\\u0000b"}', "missing field"),
    ("NaN", '{"v": NaN}', "missing field"),
    ("lone surrogate escape", '{"\\ud800": 1}', "missing field"),
]


@pytest.mark.parametrize(("name", "document", "reason"), CORRUPT_DOCUMENTS, ids=lambda v: v[:20])
def test_verify_a_corrupted_document_is_a_verdict(
    healthcare_org, key_client, name, document, reason
):
    row = receipt_make(healthcare_org)
    raw_sql("UPDATE healthcare_receipt SET document = %s WHERE id = %s", [document, row.pk])

    response = key_client.post(detail(row.pk) + "/verify")

    assert response.status_code == 200, name
    body = response.json()
    assert body["valid"] is False and body["signature_valid"] is False
    assert reason in body["reason"], body["reason"]
    assert key_client.get(detail(row.pk)).status_code == 200


def test_a_raw_nul_in_the_document(healthcare_org, key_client):
    """PostgreSQL refuses NUL characters in text; SQLite stores them, and the check says
    what it found."""
    row = receipt_make(healthcare_org)
    tampered = row.document.replace('"model":"', '"model":"\x00')
    if connection.vendor == "postgresql":
        with pytest.raises(DataError), transaction.atomic():
            raw_sql("UPDATE healthcare_receipt SET document = %s WHERE id = %s", [tampered, row.pk])
        return
    raw_sql("UPDATE healthcare_receipt SET document = %s WHERE id = %s", [tampered, row.pk])
    body = key_client.post(detail(row.pk) + "/verify").json()
    assert body["valid"] is False and body["reason"]


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("prev_hash", "é" * 64, "chain_hash does not match"),
        ("chain_hash", "not a hash", "chain_hash does not match"),
        ("trace_id", "tr_/../../etc", "trace_id does not match"),
        ("model", "m" * 512, "model does not match"),
        ("sequence", 7, "missing"),
    ],
)
def test_verify_corrupted_columns_is_a_verdict(healthcare_org, key_client, column, value, reason):
    receipt_make(healthcare_org)
    row = receipt_make(healthcare_org)
    raw_sql(f"UPDATE healthcare_receipt SET {column} = %s WHERE id = %s", [value, row.pk])

    body = key_client.post(detail(row.pk) + "/verify").json()

    assert body["valid"] is False
    assert reason in body["reason"], body["reason"]
    assert key_client.get(detail(row.pk)).status_code == 200


# --- Verify a submitted document -------------------------------------------------------------

VERIFY = LIST + "/verify"


def test_a_stored_receipt_submitted_back_is_valid_stored_and_identical(healthcare_org, key_client):
    row = receipt_make(healthcare_org, cost_prevented_eur=0.000015)

    response = key_client.post(VERIFY, data=row.document, content_type="application/json")

    assert response.status_code == 200
    body = response.json()
    assert body["valid"] is True and body["stored"] is True and body["identical"] is True
    assert body["id"] == row.pk and body["key_id"] == row.key_id
    event = AuditEvent.objects.get(action="receipt.document_verified")
    assert event.target == str(row.attestation_id)
    assert event.data["valid"] is True and event.data["identical"] is True


def test_a_tampered_copy_is_invalid_and_not_identical(healthcare_org, key_client):
    row = receipt_make(healthcare_org)
    tampered = dict(json.loads(row.document), outcome="ALLOWED")

    body = key_client.post(VERIFY, tampered, format="json").json()

    assert body["valid"] is False and "signature does not match" in body["reason"]
    assert body["stored"] is True and body["identical"] is False


def test_a_valid_receipt_we_do_not_hold(healthcare_org, key_client):
    row = receipt_make(healthcare_org)
    document = json.loads(row.document)
    raw_sql("DELETE FROM healthcare_receipt WHERE id = %s", [row.pk])

    body = key_client.post(VERIFY, document, format="json").json()

    assert body["valid"] is True
    assert body["stored"] is False and body["identical"] is None and body["id"] is None


def test_another_organisations_receipt_is_not_stored_for_us(healthcare_org, other_org, key_client):
    theirs = receipt_make(other_org)
    body = key_client.post(VERIFY, data=theirs.document, content_type="application/json").json()
    assert body["valid"] is True  # signed by us, for them
    assert body["stored"] is False and body["id"] is None


def test_a_receipt_signed_by_another_key_is_invalid(healthcare_org, key_client):
    stranger = IssuerKey.generate()
    row = receipt_make(healthcare_org, key=stranger)
    body = key_client.post(VERIFY, data=row.document, content_type="application/json").json()
    assert body["valid"] is False and "not a pinned issuer key" in body["reason"]


def test_the_receipt_wrapped_in_an_object_says_so(healthcare_org, key_client):
    row = receipt_make(healthcare_org)
    body = key_client.post(VERIFY, {"receipt": json.loads(row.document)}, format="json").json()
    assert body["valid"] is False and "missing field" in body["reason"]


def _deep(depth: int):
    value: object = "x"
    for _ in range(depth):
        value = {"k": value}
    return value


HOSTILE_BODIES = [
    [],
    [1, 2, 3],
    "receipt",
    42,
    None,
    True,
    {},
    {"v": 1},
    {"v": "1", "attestation_id": 7, "trace_id": None, "model": [], "outcome": {}},
    {"attestation_id": "x" * 1_000_000},
    {"model": "\x00" * 1000, "attestation_id": "\x00"},
    {"policy_applied": ["a"] * 100_000},
    {"\ud800": "lone"},
    _deep(50),
]


@pytest.mark.parametrize("body", HOSTILE_BODIES, ids=lambda b: repr(b)[:30])
def test_hostile_documents_get_a_verdict(healthcare_org, key_client, body):
    receipt_make(healthcare_org)
    response = key_client.post(VERIFY, data=json.dumps(body), content_type="application/json")
    assert response.status_code == 200, response.content
    verdict = response.json()
    assert verdict["valid"] is False and verdict["reason"]
    assert verdict["stored"] is False


@pytest.mark.parametrize(
    ("data", "content_type", "status", "code"),
    [
        ("{not json", "application/json", 400, "invalid_json"),
        ('{"v": NaN}', "application/json", 400, "invalid_json"),
        ("[" * 100_000 + "]" * 100_000, "application/json", 400, "invalid_json"),
        (b"\xff\xfe", "application/json", 400, "invalid_json"),
        ("v=1", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        ("v=1", "text/plain", 415, "unsupported_media_type"),
    ],
)
def test_bodies_that_are_not_json_are_a_clean_error(
    healthcare_org, key_client, data, content_type, status, code
):
    response = key_client.post(VERIFY, data=data, content_type=content_type)
    assert response.status_code == status
    assert error(response)["code"] == code


def test_a_body_over_the_size_limit_is_413(healthcare_org, key_client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1_000_000
    body = json.dumps({"model": "m" * 1_100_000})
    response = key_client.post(VERIFY, data=body, content_type="application/json")
    assert response.status_code == 413
    assert error(response)["code"] == "request_too_large"


def test_verifying_a_document_needs_post(healthcare_org, key_client):
    response = key_client.get(VERIFY)
    assert response.status_code == 405
