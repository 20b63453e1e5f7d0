"""healthcare.chain on rows an attacker has been at: a verdict, never an exception."""

from __future__ import annotations

from healthcare.chain import chain_hash, chain_verify, receipt_check
from healthcare.tests.factories import raw_sql, receipt_make


def test_chain_hash_of_text_the_linker_never_wrote_does_not_raise():
    valid = chain_hash("0" * 64, "{}")
    assert chain_hash("é" * 64, "{}") != valid  # was a UnicodeEncodeError
    assert chain_hash("0" * 64, "\ud800") != valid  # a lone surrogate, as SQLite returns it
    assert valid == chain_hash("0" * 64, "{}")  # and the hash of what it did write is stable


def test_a_deeply_nested_document_is_a_reason_not_a_recursion_error(healthcare_org):
    row = receipt_make(healthcare_org)
    raw_sql("UPDATE healthcare_receipt SET document = %s WHERE id = %s", ["[" * 100_000, row.pk])
    row.refresh_from_db()

    check = receipt_check(row)
    assert not check.valid and "nested too deeply" in check.reason

    verdict = chain_verify(healthcare_org.pk)
    assert not verdict.valid and verdict.sequence == row.sequence
    assert "nested too deeply" in verdict.reason


def test_a_non_ascii_prev_hash_is_a_reason(healthcare_org):
    receipt_make(healthcare_org)
    row = receipt_make(healthcare_org)
    raw_sql("UPDATE healthcare_receipt SET prev_hash = %s WHERE id = %s", ["é" * 64, row.pk])
    row.refresh_from_db()

    assert "chain_hash does not match" in receipt_check(row).reason
    verdict = chain_verify(healthcare_org.pk)
    assert not verdict.valid and verdict.sequence == 2
