"""Signed checkpoints: the runs, the file store, and the breaks they reveal."""

from __future__ import annotations

import json
import stat
from datetime import timedelta
from pathlib import Path

import pytest
import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.utils import timezone

from accounts.services import organization_create
from accounts.tests.factories import UserFactory
from compliance import checkpoints
from compliance.chains import Head, head_get
from compliance.checkpoint_docs import checkpoint_sign
from compliance.checkpoint_store import StoreError, store_files, store_write
from compliance.checkpoints import checkpoint_breaks, checkpoint_run, store_latest
from compliance.models import ChainCheckpoint
from compliance.services import audit_event_record
from compliance.tests import tamper
from compliance.tests.receipts import receipts_make
from compliance.verify import audit_chain_report, receipts_chain_report
from healthcare.signing import IssuerKey, b64url_decode, issuer_key

pytestmark = pytest.mark.django_db


def record(org, count: int = 3) -> None:
    for n in range(count):
        audit_event_record(action=f"test.{n}", organization=org, data={"n": n})


def store(settings) -> Path:
    return Path(settings.AQTA_CHECKPOINT_DIR)


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def reasons(org, kind: str = "audit") -> list[str]:
    return [b.reason for b in checkpoint_breaks(kind, str(org.pk))]


# --- runs and the store ------------------------------------------------------------------


def test_a_run_signs_every_chain_into_a_read_only_file_and_the_database(org, settings):
    record(org)
    audit_event_record(action="test.global")

    run = checkpoint_run()

    assert run.full and run.signed == 2 and not run.breaks
    path = store(settings) / str(run.file)
    assert path.is_file() and stat.S_IMODE(path.stat().st_mode) == 0o444
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temporary
    written = lines(path)
    assert {(c["kind"], c["scope"]) for c in written} == {
        ("audit", str(org.pk)),
        ("audit", "global"),
    }
    mine = next(c for c in written if c["scope"] == str(org.pk))
    head = head_get("audit", str(org.pk))
    assert head is not None
    assert (mine["length"], mine["last_hash"]) == (head.length, head.last_hash)
    # The database holds the same documents, byte for byte.
    rows = {row.scope: row for row in ChainCheckpoint.objects.all()}
    assert rows[str(org.pk)].document == path.read_text().splitlines()[written.index(mine)]
    assert rows[str(org.pk)].file == run.file


def test_the_signature_verifies_with_the_published_key_alone(org):
    record(org)
    checkpoint_run()
    document = json.loads(ChainCheckpoint.objects.get(scope=str(org.pk)).document)

    signature = b64url_decode(document.pop("signature"))
    assert document["public_key"] == issuer_key().public_key
    public = Ed25519PublicKey.from_public_bytes(b64url_decode(document["public_key"]))
    public.verify(signature, rfc8785.dumps(document))  # raises if it does not verify
    document["length"] += 1
    with pytest.raises(InvalidSignature):
        public.verify(signature, rfc8785.dumps(document))


def test_nothing_moved_nothing_written_then_a_delta_of_what_moved(org, settings):
    other = organization_create(name="Other", owner=UserFactory.create())
    record(org)
    first = checkpoint_run()
    assert checkpoint_run().file is None

    audit_event_record(action="test.later", organization=other)
    delta = checkpoint_run()

    assert not delta.full and delta.signed == 1 and delta.carried == 0
    assert [c["scope"] for c in lines(store(settings) / str(delta.file))] == [str(other.pk)]
    latest = store_latest().entries
    assert (
        latest[("audit", str(org.pk))].document in (store(settings) / str(first.file)).read_text()
    )
    assert latest[("audit", str(other.pk))].length == head_get("audit", str(other.pk)).length  # type: ignore[union-attr]


def test_a_full_file_lists_every_chain_again_once_a_day(org, settings):
    record(org)
    checkpoint_run()
    audit_event_record(action="test.global")

    run = checkpoint_run(
        now=timezone.now() + timedelta(seconds=settings.AQTA_CHECKPOINT_FULL_SECONDS)
    )

    assert run.full and run.signed == 1 and run.carried == 1
    assert len(lines(store(settings) / str(run.file))) == 2
    assert len(list(store_files())) == 2


def test_an_unwritable_store_records_nothing(org, settings, tmp_path):
    record(org)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    settings.AQTA_CHECKPOINT_DIR = str(blocker / "checkpoints")

    with pytest.raises(StoreError, match="cannot write to the checkpoint store"):
        checkpoint_run()
    assert not ChainCheckpoint.objects.exists()


def test_a_file_name_is_never_reused(settings):
    now = timezone.now()
    names = {store_write(["{}"], full=True, now=now) for _ in range(5)}
    assert len(names) == 5


# --- the breaks ------------------------------------------------------------------------------


def test_an_intact_chain_agrees_with_its_checkpoint(org):
    record(org)
    checkpoint_run()
    record(org)  # appended since: still extends it

    assert checkpoint_breaks("audit", str(org.pk)) == []
    assert audit_chain_report(scope=str(org.pk)).valid


def test_a_truncated_tail_is_found_by_the_checkpoint(org):
    record(org, 5)
    checkpoint_run()
    length = head_get("audit", str(org.pk)).length  # type: ignore[union-attr]

    tamper.delete_events(str(org.pk), from_sequence=length - 1)  # and the head set back

    report = audit_chain_report(scope=str(org.pk))
    assert not report.valid
    assert report.sequence == length - 1
    assert f"the chain has {length - 2} events but the checkpoint of" in report.first_break.reason  # type: ignore[union-attr]
    assert "the newest events were removed" in report.first_break.reason  # type: ignore[union-attr]


def test_a_deleted_chain_is_found_by_the_checkpoint(org):
    record(org)
    checkpoint_run()

    tamper.delete_chain(str(org.pk))

    report = audit_chain_report(scope=str(org.pk))
    assert not report.valid and report.length == 0
    assert "the chain is gone" in report.first_break.reason  # type: ignore[union-attr]
    assert "deleted" in report.first_break.reason  # type: ignore[union-attr]


def test_a_rehashed_chain_is_found_only_by_the_checkpoint(org):
    record(org, 4)
    checkpoint_run()
    length = head_get("audit", str(org.pk)).length  # type: ignore[union-attr]

    tamper.edit_event(str(org.pk), 2, data={"n": 1000})
    tamper.rehash_chain(str(org.pk))

    report = audit_chain_report(scope=str(org.pk))
    assert not report.valid
    assert report.checked == length  # every link holds: only the checkpoint knows
    assert report.sequence == length
    assert "was rewritten up to it" in report.first_break.reason  # type: ignore[union-attr]
    assert report.first_break.row_id is not None  # type: ignore[union-attr]


def test_a_run_does_not_sign_a_rewritten_chain_again(org, caplog):
    record(org, 3)
    checkpoint_run()
    tamper.edit_event(str(org.pk), 1, data={"n": -1})
    tamper.rehash_chain(str(org.pk))
    record(org)  # more events on top of the forgery

    with caplog.at_level("ERROR", logger="aqta.audit"):
        run = checkpoint_run()

    assert run.signed == 0 and len(run.breaks) == 1
    assert "rewritten" in run.breaks[0].reason
    assert any("rewritten" in r.getMessage() for r in caplog.records)
    assert ChainCheckpoint.objects.filter(scope=str(org.pk)).count() == 1
    assert not audit_chain_report(scope=str(org.pk)).valid  # and it stays found


def test_a_run_does_not_sign_a_chain_broken_since_its_checkpoint(org):
    record(org, 2)
    checkpoint_run()
    record(org, 2)
    tamper.edit_event(str(org.pk), head_get("audit", str(org.pk)).length, action="test.x")  # type: ignore[union-attr]

    run = checkpoint_run()

    assert run.signed == 0 and "altered" in run.breaks[0].reason


def test_a_forged_database_copy_does_not_verify(org):
    record(org)
    checkpoint_run()
    row = ChainCheckpoint.objects.get(scope=str(org.pk))
    forged = json.loads(row.document)
    later = row.signed_at + timedelta(seconds=1)
    forged["length"] += 10
    forged["signed_at"] = later.isoformat()
    ChainCheckpoint.objects.create(
        **{f: getattr(row, f) for f in ("kind", "scope", "last_hash", "key_id", "file")},
        length=forged["length"],
        signed_at=later,
        document=rfc8785.dumps(forged).decode(),
    )

    found = reasons(org)
    assert any("signature does not match its contents" in r for r in found), found
    assert any("is in the database but not in the checkpoint file store" in r for r in found)


def test_removing_the_database_copy_is_found(org):
    record(org)
    checkpoint_run()
    with tamper.triggers_off():
        tamper.sql("DELETE FROM compliance_chaincheckpoint")

    assert any("database's copy" in r and "is missing" in r for r in reasons(org))


def test_a_checkpoint_signed_by_another_key_is_reported(org, settings):
    record(org)
    head = head_get("audit", str(org.pk))
    assert head is not None
    stranger = checkpoint_sign(head, base_at=None, now=timezone.now(), key=IssuerKey.generate())
    store_write([stranger.document], full=True, now=timezone.now())

    assert any("not one of the issuer's" in r for r in reasons(org))


def test_an_unreadable_store_line_is_reported(org, settings):
    record(org)
    checkpoint_run()
    store_write(["not json", '{"v": 1}'], full=False, now=timezone.now())

    found = reasons(org)
    assert any("is not a checkpoint: not JSON" in r for r in found), found
    assert any("is not a checkpoint: its fields" in r for r in found), found


def test_receipt_chains_are_checkpointed_and_checked_the_same_way(org):
    receipts = receipts_make(org, 4)
    run = checkpoint_run()
    assert ("receipts", str(org.pk)) in store_latest().entries and run.signed >= 2
    assert receipts_chain_report(org.pk).valid

    newest = receipts[-1]
    with tamper.triggers_off(tamper.RECEIPT_TABLES):
        tamper.sql("DELETE FROM healthcare_receipt WHERE id = %s", [newest.pk])
        tamper.sql(
            "UPDATE healthcare_receiptchain SET length = %s, last_hash = %s "
            "WHERE organization_id = %s",
            [3, receipts[2].chain_hash, tamper.uuid_value(org.pk)],
        )

    found = checkpoint_breaks("receipts", str(org.pk))
    assert [b.sequence for b in found] == [4]
    assert "the newest receipts were removed" in found[0].reason
    report = receipts_chain_report(org.pk)
    assert not report.valid and report.sequence == 4


def test_checkpoint_breaks_refuses_an_unknown_kind():
    with pytest.raises(ValueError, match="kind must be one of"):
        checkpoint_breaks("traces", "global")


def test_the_latest_is_read_once_per_set_of_files(org, monkeypatch):
    record(org)
    checkpoint_run()
    store_latest()
    reads = []
    monkeypatch.setattr(checkpoints, "_store_read", lambda files: reads.append(files))
    store_latest()
    assert reads == []


def test_a_head_without_rows_yet_is_signed_as_empty(org):
    head = Head("audit", "empty-scope", 0, "0" * 64)
    signed = checkpoint_sign(head, base_at=None, now=timezone.now(), key=issuer_key())
    assert json.loads(signed.document)["length"] == 0


def test_the_beat_task_runs_a_checkpoint(org, settings):
    from compliance import tasks

    assert settings.CELERY_BEAT_SCHEDULE["audit-checkpoint"] == {
        "task": "compliance.tasks.audit_checkpoint",
        "schedule": float(settings.AQTA_CHECKPOINT_INTERVAL_SECONDS),
    }
    record(org)
    result = tasks.audit_checkpoint.apply().get()
    assert result["signed"] >= 1 and result["file"] and result["breaks"] == []


def test_the_deploy_check_warns_of_a_store_on_the_apps_own_disk(settings, tmp_path):
    from compliance.checks import checkpoint_store_check

    settings.EMBEDDED = False
    settings.VAR_DIR = tmp_path
    settings.AQTA_CHECKPOINT_DIR = str(tmp_path / "checkpoints")
    assert [w.id for w in checkpoint_store_check(None)] == ["compliance.W001"]
    settings.AQTA_CHECKPOINT_DIR = "/mnt/worm-bucket/aqta"
    assert checkpoint_store_check(None) == []
