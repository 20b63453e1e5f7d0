"""manage.py receipts_verify: every organisation's chain, or one; text or JSON; exit 0/1."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command

from healthcare import keyring
from healthcare.tests.factories import raw_sql, receipt_make, receipts_bulk


def run(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    try:
        call_command("receipts_verify", *args, stdout=out)
    except CommandError as error:
        if error.returncode == 1 and "receipt chains broken" in str(error):
            return 1, out.getvalue()
        raise
    return 0, out.getvalue()


@pytest.fixture
def two_chains(healthcare_org, other_org):
    keyring.register()
    mine = [receipt_make(healthcare_org) for _ in range(3)]
    theirs = [receipt_make(other_org) for _ in range(2)]
    return mine, theirs


def test_no_receipts_anywhere_is_intact(db):
    assert run() == (0, "0 receipt chain(s) intact.\n")


def test_every_chain_intact(healthcare_org, other_org, two_chains):
    status, text = run("--all")
    assert status == 0
    assert f"{healthcare_org.slug}\tintact\t3 receipts checked" in text
    assert f"{other_org.slug}\tintact\t2 receipts checked" in text
    assert text.endswith("2 receipt chain(s) intact.\n")
    assert run() == (status, text)  # --all is the default


def test_a_broken_chain_is_named_with_where_and_why(healthcare_org, other_org, two_chains):
    mine, _ = two_chains
    raw_sql("UPDATE healthcare_receipt SET model = 'gpt-4o' WHERE id = %s", [mine[1].pk])

    out = io.StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("receipts_verify", stdout=out)

    assert raised.value.returncode == 1
    assert str(raised.value) == f"1 of 2 receipt chains broken: {healthcare_org.slug}"
    text = out.getvalue()
    assert (
        f"{healthcare_org.slug}\tBROKEN at receipt 2 (id {mine[1].pk}): "
        "the row's model does not match the signed receipt" in text
    )
    assert f"{other_org.slug}\tintact" in text


def test_one_organisation_by_id_or_slug(healthcare_org, other_org, two_chains):
    for ref in (str(other_org.pk), other_org.slug):
        status, text = run("--org", ref)
        assert status == 0 and healthcare_org.slug not in text and other_org.slug in text


def test_json(healthcare_org, two_chains):
    mine, _ = two_chains
    raw_sql("DELETE FROM healthcare_receipt WHERE id = %s", [mine[2].pk])  # the newest
    status, text = run("--json")
    report = json.loads(text)
    assert status == 1 and report["valid"] is False
    mine = next(o for o in report["organizations"] if o["slug"] == healthcare_org.slug)
    assert mine == {
        "organization": str(healthcare_org.pk),
        "slug": healthcare_org.slug,
        "valid": False,
        "length": 3,
        "checked": 2,
        "first_break": {
            "sequence": 3,
            "receipt_id": None,
            "reason": "the chain ends at 2 but its head says 3: the newest receipts were removed",
        },
    }
    theirs = next(o for o in report["organizations"] if o["slug"] != healthcare_org.slug)
    assert theirs["valid"] is True and theirs["first_break"] is None


def test_an_unknown_organisation_is_an_error(db):
    with pytest.raises(CommandError, match="No organisation with id or slug 'nope'"):
        call_command("receipts_verify", "--org", "nope")


def test_org_and_all_together_are_refused(healthcare_org):
    with pytest.raises(CommandError, match="not allowed with"):
        call_command("receipts_verify", "--org", healthcare_org.slug, "--all")


def test_a_long_chain(healthcare_org):
    keyring.register()
    receipts_bulk(healthcare_org, 3_000)
    assert run("--org", healthcare_org.slug)[1].startswith(
        f"{healthcare_org.slug}\tintact\t3,000 receipts checked"
    )
