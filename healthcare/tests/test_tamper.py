"""Tampering with stored receipts, as someone with the database's owner rights could (the
append-only triggers disabled with raw SQL): each change is found and located, by the API's
verify and by ``manage.py receipts_verify``. Every test first shows the chain intact, so a
check that found nothing would fail it.

Run on PostgreSQL (the triggers are PostgreSQL's) and on SQLite alike; the last tests show
that on PostgreSQL, with the triggers on, none of these changes can be made at all.
"""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from healthcare import keyring
from healthcare.models import Receipt
from healthcare.receipts import receipt_issue
from healthcare.signing import IssuerKey, b64url_decode, b64url_encode, issuer_key
from healthcare.store import receipt_document
from healthcare.tests.factories import raw_sql, receipt_make


def verify_command(org) -> tuple[int, str, dict]:
    """(exit status, text output, JSON report) of receipts_verify for ``org``."""
    results = []
    for extra in ([], ["--json"]):
        out = io.StringIO()
        try:
            call_command("receipts_verify", "--org", str(org.pk), *extra, stdout=out)
            status = 0
        except CommandError as error:
            status = error.returncode
        results.append((status, out.getvalue()))
    (status, text), (json_status, report) = results
    assert status == json_status
    return status, text, json.loads(report)


def verify_api(client, row):
    response = client.post(f"/api/health/receipts/{row.pk}/verify")
    assert response.status_code == 200
    return response.json()


@pytest.fixture
def chain(healthcare_org, key_client):
    """Five receipts, linked, checked intact by the command and the API."""
    keyring.register()  # the issuer key's window opens before the receipts
    rows = [receipt_make(healthcare_org) for _ in range(5)]
    status, text, report = verify_command(healthcare_org)
    assert status == 0 and "intact" in text and report["valid"] is True
    assert all(verify_api(key_client, row)["valid"] for row in rows)
    return rows


def by_sequence(sequence: int) -> Receipt:
    return Receipt.objects.get(sequence=sequence)


def assert_broken_at(org, sequence: int, reason: str):
    status, text, report = verify_command(org)
    assert status == 1, text
    assert f"BROKEN at receipt {sequence}" in text and reason in text, text
    first_break = report["organizations"][0]["first_break"]
    assert report["valid"] is False and first_break["sequence"] == sequence
    assert reason in first_break["reason"]
    return first_break


def test_an_edited_column(healthcare_org, key_client, chain):
    raw_sql("UPDATE healthcare_receipt SET outcome = 'ALLOWED' WHERE sequence = 3")

    first_break = assert_broken_at(healthcare_org, 3, "the row's outcome does not match")
    assert first_break["receipt_id"] == chain[2].pk
    verdict = verify_api(key_client, chain[2])
    assert verdict["valid"] is False and "outcome does not match" in verdict["reason"]
    assert verdict["signature_valid"] is True  # the signed document itself is intact
    assert all(verify_api(key_client, row)["valid"] for row in chain[:2] + chain[3:])


def test_an_edited_document(healthcare_org, key_client, chain):
    # A careful attacker changes the column too, so the row agrees with the document.
    raw_sql(
        "UPDATE healthcare_receipt SET outcome = 'ALLOWED', "
        'document = REPLACE(document, \'"outcome":"BLOCKED"\', \'"outcome":"ALLOWED"\') '
        "WHERE sequence = 3"
    )
    assert '"outcome":"ALLOWED"' in by_sequence(3).document

    assert_broken_at(healthcare_org, 3, "the signature does not match the receipt's contents")
    verdict = verify_api(key_client, chain[2])
    assert verdict["valid"] is False and verdict["signature_valid"] is False
    assert "signature does not match" in verdict["reason"]


def test_a_document_re_signed_with_another_key(healthcare_org, key_client, chain):
    row = by_sequence(2)
    fields = json.loads(row.document)
    forged = receipt_issue(
        **{k: fields[k] for k in ("trace_id", "org_id", "request_hash", "model", "policy_applied")},
        outcome="ALLOWED",
        timestamp=row.issued_at,
        attestation_id=row.attestation_id,
        key=IssuerKey.generate(),
    )
    raw_sql(
        "UPDATE healthcare_receipt SET document = %s, outcome = 'ALLOWED' WHERE id = %s",
        [receipt_document(forged), row.pk],
    )

    assert_broken_at(healthcare_org, 2, "public_key is not a pinned issuer key")
    assert "not a pinned issuer key" in verify_api(key_client, row)["reason"]


def test_a_deleted_receipt(healthcare_org, key_client, chain):
    raw_sql("DELETE FROM healthcare_receipt WHERE sequence = 3")

    first_break = assert_broken_at(healthcare_org, 3, "receipts 3 to 3 are missing")
    assert first_break["receipt_id"] == chain[3].pk  # the first one after the gap
    assert (
        "receipt 3, before it in the chain, is missing"
        in verify_api(key_client, chain[3])["reason"]
    )
    assert (
        "receipt 3, after it in the chain, is missing" in verify_api(key_client, chain[1])["reason"]
    )


def test_two_swapped_documents(healthcare_org, key_client, chain):
    second, fourth = by_sequence(2), by_sequence(4)
    raw_sql(
        "UPDATE healthcare_receipt SET document = %s WHERE id = %s", [fourth.document, second.pk]
    )
    raw_sql(
        "UPDATE healthcare_receipt SET document = %s WHERE id = %s", [second.document, fourth.pk]
    )

    assert_broken_at(healthcare_org, 2, "the row's attestation_id does not match")
    for row in (second, fourth):
        verdict = verify_api(key_client, row)
        assert verdict["valid"] is False and "attestation_id does not match" in verdict["reason"]


def test_two_swapped_places(healthcare_org, key_client, chain):
    """Rows 2 and 4 trade their whole place in the chain (sequence and hashes): each row's
    own chain_hash no longer covers its document."""
    second, fourth = by_sequence(2), by_sequence(4)
    raw_sql(
        "UPDATE healthcare_receipt SET sequence = NULL WHERE id IN (%s, %s)", [second.pk, fourth.pk]
    )
    for row, place in ((second, fourth), (fourth, second)):
        raw_sql(
            "UPDATE healthcare_receipt SET sequence = %s, prev_hash = %s, chain_hash = %s "
            "WHERE id = %s",
            [place.sequence, place.prev_hash, place.chain_hash, row.pk],
        )

    assert_broken_at(healthcare_org, 2, "its chain_hash does not match its contents")
    assert verify_api(key_client, fourth)["chain_valid"] is False


def test_a_changed_signature(healthcare_org, key_client, chain):
    row = by_sequence(4)
    document = json.loads(row.document)
    raw = bytearray(b64url_decode(document["signature"]))
    raw[10] ^= 0x01
    tampered = row.document.replace(document["signature"], b64url_encode(bytes(raw)))
    raw_sql("UPDATE healthcare_receipt SET document = %s WHERE id = %s", [tampered, row.pk])

    assert_broken_at(healthcare_org, 4, "the signature does not match the receipt's contents")
    verdict = verify_api(key_client, row)
    assert verdict["valid"] is False and "signature does not match" in verdict["reason"]


def test_the_newest_receipts_truncated(healthcare_org, key_client, chain):
    raw_sql("DELETE FROM healthcare_receipt WHERE sequence >= 4")

    first_break = assert_broken_at(
        healthcare_org,
        4,
        "the chain ends at 3 but its head says 5: the newest receipts were removed",
    )
    assert first_break["receipt_id"] is None
    verdict = verify_api(key_client, chain[2])
    assert verdict["valid"] is False
    assert "receipt 4, after it in the chain, is missing" in verdict["reason"]


def test_a_key_rotation_keeps_old_receipts_valid(healthcare_org, key_client, chain):
    old = issuer_key()
    new = IssuerKey.generate()
    keyring.register(new)
    later = [receipt_make(healthcare_org, key=new) for _ in range(2)]

    status, text, _ = verify_command(healthcare_org)
    assert status == 0, text
    before, after = verify_api(key_client, chain[0]), verify_api(key_client, later[0])
    assert before["valid"] is True and before["key_id"] == old.key_id
    assert after["valid"] is True and after["key_id"] == new.key_id
    published: list[dict] = keyring.published()["keys"]  # type: ignore[assignment]
    listed = {k["key_id"]: k for k in published}
    assert listed[old.key_id]["valid_until"] is not None
    assert listed[new.key_id]["valid_until"] is None


def test_the_old_key_signing_after_its_retirement_is_refused(healthcare_org, key_client, chain):
    keyring.register(IssuerKey.generate())
    late = timezone.now() + timedelta(seconds=keyring.WINDOW_GRACE_SECONDS + 60)
    stale = receipt_make(healthcare_org, timestamp=late)  # the retired key, past its grace

    verdict = verify_api(key_client, stale)
    assert verdict["valid"] is False and "outside its validity window" in verdict["reason"]
    assert_broken_at(healthcare_org, 6, "outside its validity window")


# --- With the triggers on (PostgreSQL) ---------------------------------------------------------

TAMPERING = [
    "UPDATE healthcare_receipt SET outcome = 'ALLOWED' WHERE sequence = 3",
    "UPDATE healthcare_receipt SET document = '{}' WHERE sequence = 3",
    "UPDATE healthcare_receipt SET sequence = 9 WHERE sequence = 3",
    "UPDATE healthcare_receipt SET high_risk = false WHERE sequence = 3",
    "DELETE FROM healthcare_receipt WHERE sequence = 3",
]


@pytest.mark.parametrize("sql", TAMPERING)
def test_postgresql_refuses_each_change_while_the_triggers_are_on(postgresql, chain, sql):
    with connection.cursor() as cursor:  # the one change allowed: marking it high-risk
        cursor.execute("UPDATE healthcare_receipt SET high_risk = true WHERE sequence = 3")
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql)
    assert by_sequence(3).document == chain[2].document


def test_postgresql_refuses_truncate(postgresql, chain):
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the inserts' deferred checks
        cursor.execute("SET aqta.allow_truncate = 'off'")
    try:
        with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("TRUNCATE healthcare_receipt CASCADE")
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET aqta.allow_truncate = 'on'")
    assert Receipt.objects.count() == 5


# --- what only the signed checkpoints can show --------------------------------------------


def _rehash_from(org, sequence: int) -> None:
    """Recompute every chain_hash from ``sequence`` on, and the head, with the public
    algorithm: the chain is consistent again, as an attacker with the database would
    leave it."""
    from healthcare.chain import chain_hash
    from healthcare.models import ReceiptChain

    rows = list(Receipt.objects.filter(organization=org).order_by("sequence"))
    prev = rows[sequence - 2].chain_hash if sequence > 1 else "0" * 64
    for row in rows[sequence - 1 :]:
        digest = chain_hash(prev, row.document)
        raw_sql(
            "UPDATE healthcare_receipt SET prev_hash = %s, chain_hash = %s WHERE id = %s",
            [prev, digest, row.pk],
        )
        prev = digest
    raw_sql(
        "UPDATE healthcare_receiptchain SET last_hash = %s WHERE id = %s",
        [prev, ReceiptChain.objects.get(organization=org).pk],
    )


def test_a_re_hashed_chain_is_found_by_its_checkpoint(healthcare_org, key_client, chain):
    from compliance.checkpoints import checkpoint_run
    from healthcare.models import ReceiptChain

    checkpoint_run()
    # Remove receipt 3, move 4 and 5 down, re-hash from 3 on and fix the head: every
    # signature is still ours and every link holds, so only the checkpoint can tell.
    raw_sql("DELETE FROM healthcare_receipt WHERE sequence = 3")
    for sequence in (4, 5):
        raw_sql(
            "UPDATE healthcare_receipt SET sequence = %s WHERE sequence = %s",
            [sequence - 1, sequence],
        )
    raw_sql(
        "UPDATE healthcare_receiptchain SET length = 4 WHERE id = %s",
        [ReceiptChain.objects.get(organization=healthcare_org).pk],
    )
    _rehash_from(healthcare_org, 3)
    from healthcare.chain import _walk

    assert _walk(healthcare_org.pk).valid  # consistent without the checkpoint

    status, text, report = verify_command(healthcare_org)

    assert status == 1, text
    first_break = report["organizations"][0]["first_break"]
    assert "checkpoint" in first_break["reason"], first_break


def test_a_chain_truncated_with_its_head_is_found_by_its_checkpoint(
    healthcare_org, key_client, chain
):
    from compliance.checkpoints import checkpoint_run
    from healthcare.models import ReceiptChain

    checkpoint_run()
    third = by_sequence(3)
    raw_sql("DELETE FROM healthcare_receipt WHERE sequence >= 4")
    raw_sql(
        "UPDATE healthcare_receiptchain SET length = 3, last_hash = %s WHERE id = %s",
        [third.chain_hash, ReceiptChain.objects.get(organization=healthcare_org).pk],
    )

    status, text, report = verify_command(healthcare_org)

    assert status == 1, text
    assert "checkpoint" in report["organizations"][0]["first_break"]["reason"]
