"""/api/health/receipts: verifying a stored receipt, and a receipt document someone submits,
whatever state the row or the document is in."""

from __future__ import annotations

import json

import pytest
from django.db import DataError, connection, transaction

from compliance.models import AuditEvent
from healthcare.signing import IssuerKey
from healthcare.tests.factories import raw_sql, receipt_make
from healthcare.tests.test_api import LIST, detail, error

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
