"""``manage.py audit_checkpoint`` and ``manage.py audit_verify``, and the tamper tests
through the auditor's command: each attack must make it fail, and say where."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from compliance.chains import head_get
from compliance.services import audit_event_record
from compliance.tests import tamper
from compliance.tests.receipts import receipts_make

pytestmark = pytest.mark.django_db


def run(command: str, *args: str) -> tuple[int, str, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command(command, *args, stdout=out, stderr=err)
    except SystemExit as exit:
        return int(exit.code or 0), out.getvalue(), err.getvalue()
    return 0, out.getvalue(), err.getvalue()


@pytest.fixture
def chain(org):
    for n in range(4):
        audit_event_record(action=f"test.{n}", organization=org, data={"n": n})
    audit_event_record(action="test.global")
    code, out, _ = run("audit_checkpoint")
    assert code == 0 and out.startswith("Wrote "), out
    return str(org.pk)


def test_checkpoint_writes_then_has_nothing_to_do(chain):
    code, out, _ = run("audit_checkpoint")
    assert (code, out.strip()) == (0, "Nothing moved since the last checkpoint.")
    code, out, _ = run("audit_checkpoint", "--json")
    assert code == 0 and json.loads(out) == {
        "file": None,
        "full": False,
        "signed": 0,
        "carried": 0,
        "breaks": [],
    }


def test_checkpoint_exits_2_when_the_store_cannot_be_written(org, settings, tmp_path):
    (tmp_path / "file").write_text("")
    settings.AQTA_CHECKPOINT_DIR = str(tmp_path / "file" / "store")
    with pytest.raises(CommandError, match="cannot write to the checkpoint store") as error:
        call_command("audit_checkpoint", stdout=StringIO())
    assert error.value.returncode == 2


def test_checkpoint_exits_1_and_signs_nothing_over_a_rewritten_chain(chain):
    tamper.edit_event(chain, 2, data={"n": 99})
    tamper.rehash_chain(chain)

    code, _, err = run("audit_checkpoint")

    assert code == 1
    assert f"BROKEN audit {chain} at 5:" in err and "rewritten" in err


def test_verify_all_intact(chain):
    code, out, _ = run("audit_verify")
    assert code == 0
    assert f"audit {chain}: 5 events, intact" in out
    assert "audit global: " in out
    assert out.strip().endswith("chain(s) checked: all intact.")


def test_verify_one_organisation_as_json(chain, org):
    code, out, _ = run("audit_verify", "--org", org.slug, "--json")
    body = json.loads(out)
    assert code == 0 and body["valid"] is True
    assert [c["scope"] for c in body["chains"]] == [chain]
    assert body["chains"][0]["checkpoint"]["length"] == 5


def test_verify_an_unknown_organisation_is_an_error(chain):
    with pytest.raises(CommandError, match="No organisation"):
        call_command("audit_verify", "--org", "nope", stdout=StringIO())


# --- tampering: each is found and located -------------------------------------------------


def broken(*args: str) -> str:
    code, out, _ = run("audit_verify", *args)
    assert code == 1, out
    assert "broken." in out
    return out


def test_an_edited_event_is_found(chain):
    tamper.edit_event(chain, 3, target="someone else")
    out = broken("--all")
    assert f"audit {chain}: 5 events, BROKEN at 3 (row " in out
    assert "its contents do not match its hash (the event was altered)" in out


def test_deleted_newest_events_are_found(chain):
    tamper.delete_events(chain, from_sequence=4)  # events 4 and 5, head set back to 3
    out = broken()
    assert f"audit {chain}: 3 events, BROKEN at 4" in out
    assert "the newest events were removed" in out


def test_a_deleted_chain_is_found(chain):
    tamper.delete_chain(chain)
    out = broken("--all")
    assert f"audit {chain}: 0 events, BROKEN at 5" in out
    assert "the chain is gone" in out


def test_a_rehashed_chain_is_found_by_its_checkpoint(chain):
    tamper.edit_event(chain, 2, data={"n": 2000})
    tamper.rehash_chain(chain)
    code, out, _ = run("audit_verify", "--all", "--json")
    body = json.loads(out)
    assert code == 1 and body["valid"] is False
    [report] = [c for c in body["chains"] if c["scope"] == chain]
    assert report["checked"] == 5  # the links hold
    assert report["first_break"]["sequence"] == 5
    assert "was rewritten up to it" in report["first_break"]["reason"]


def test_receipt_chains_are_verified_too(org):
    receipts = receipts_make(org, 3)
    run("audit_checkpoint")
    assert run("audit_verify", "--org", str(org.pk))[0] == 0
    with tamper.triggers_off(tamper.RECEIPT_TABLES):
        tamper.sql("UPDATE healthcare_receipt SET model = 'gpt-4o' WHERE id = %s", [receipts[1].pk])

    out = broken("--org", str(org.pk))
    assert f"receipts {org.pk}: 3 receipts, BROKEN at 2" in out
    assert "model does not match the signed receipt" in out
    assert head_get("receipts", str(org.pk)) is not None
