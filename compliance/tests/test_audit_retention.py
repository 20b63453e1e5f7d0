"""The compliance retention purge: audit events and receipts past 7 years go, the chains
that remain still verify, and the purge never removes evidence of tampering."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import IntegrityError, transaction

from accounts.services import organization_create
from accounts.tests.factories import UserFactory
from billing.selectors import tier_get
from compliance.audit_purge import audit_chain_purge
from compliance.audit_retention import audit_retention_days
from compliance.checkpoints import checkpoint_breaks, checkpoint_run
from compliance.models import AuditChain, AuditEvent, ChainCheckpoint
from compliance.retention import retention_purge
from compliance.services import audit_event_record
from compliance.tests import tamper
from compliance.tests.receipts import receipts_make
from compliance.verify import audit_chain_report, receipts_chain_report
from healthcare.models import Receipt, ReceiptChain

pytestmark = pytest.mark.django_db

THEN = datetime(2018, 3, 1, 9, 0, tzinfo=UTC)
SEVEN_YEARS = timedelta(days=2557)


def _org(tier: str = "healthcare"):
    with time_machine.travel(THEN - timedelta(days=1), tick=False):
        return organization_create(
            name="Clinic", owner=UserFactory.create(), tier=tier_get(slug=tier)
        )


def _record_at(organization, when: datetime, count: int = 1) -> list[AuditEvent]:
    events = []
    for n in range(count):
        with time_machine.travel(when + timedelta(seconds=n), tick=False):
            events.append(audit_event_record(action="test.event", organization=organization))
    return events


def _scope(organization) -> str:
    return str(organization.pk)


def test_healthcare_keeps_seven_years_and_no_tier_less(settings):
    assert audit_retention_days(scope=_scope(_org("healthcare"))) == 2557
    assert audit_retention_days(scope="global") == 2557
    settings.AQTA_AUDIT_RETENTION_DAYS = 30
    assert audit_retention_days(scope=_scope(_org("free"))) == 30
    assert audit_retention_days(scope=_scope(_org("pro"))) == 365  # its traces' longest
    settings.AQTA_AUDIT_RETENTION_DAYS = 0
    assert audit_retention_days(scope=_scope(_org("healthcare"))) is None


def test_events_past_seven_years_go_and_the_rest_still_verifies():
    organization = _org()
    old = _record_at(organization, THEN, 3)
    kept = _record_at(organization, THEN + timedelta(days=400), 2)
    now = THEN + SEVEN_YEARS + timedelta(days=30)

    result = retention_purge(now=now)

    assert result["audit_events"] == 4  # organization.created and the three old ones
    remaining = AuditEvent.objects.filter(chain__scope=_scope(organization))
    assert {e.pk for e in remaining if e.action == "test.event"} == {e.pk for e in kept}
    chain = AuditChain.objects.get(scope=_scope(organization))
    assert (chain.base_sequence, chain.base_hash) == (old[-1].sequence, old[-1].hash)
    assert audit_chain_report(scope=_scope(organization)).valid
    purge = remaining.get(action="audit.retention_purged")
    assert purge.data["events"] == 4 and purge.actor_label == "retention"


def test_nothing_younger_goes_and_nothing_is_kept_forever_by_zero(settings):
    organization = _org()
    _record_at(organization, THEN, 2)
    settings.AQTA_AUDIT_RETENTION_DAYS = 0

    assert retention_purge(now=THEN + SEVEN_YEARS * 3)["audit_events"] == 0
    settings.AQTA_AUDIT_RETENTION_DAYS = 2557
    assert retention_purge(now=THEN + SEVEN_YEARS - timedelta(days=2))["audit_events"] == 0
    assert AuditEvent.objects.filter(chain__scope=_scope(organization)).count() == 3


def test_the_purge_goes_in_batches_oldest_first():
    organization = _org()
    _record_at(organization, THEN, 5)

    deleted = audit_chain_purge(
        scope=_scope(organization), before=THEN + timedelta(days=1), batch=2
    )

    assert deleted == 6
    assert audit_chain_report(scope=_scope(organization)).valid


def test_a_broken_chain_is_not_purged(caplog):
    """Evidence of tampering is never purged away: the chain waits for an operator."""
    organization = _org()
    events = _record_at(organization, THEN, 4)
    tamper.edit_event(_scope(organization), events[2].sequence, data={"forged": True})

    with caplog.at_level("ERROR", logger="aqta.retention"):
        deleted = audit_chain_purge(scope=_scope(organization), before=THEN + timedelta(days=1))

    assert deleted == 0
    assert AuditEvent.objects.filter(chain__scope=_scope(organization)).count() == 5
    report = audit_chain_report(scope=_scope(organization))
    assert report.sequence == events[2].sequence and "altered" in report.first_break.reason  # type: ignore[union-attr]
    assert any("purge of" in r.getMessage() and "refused" in r.getMessage() for r in caplog.records)


def test_a_purge_signs_its_base_before_deleting(settings):
    organization = _org()
    events = _record_at(organization, THEN, 2)
    audit_chain_purge(scope=_scope(organization), before=THEN + timedelta(days=1))

    signed = ChainCheckpoint.objects.get(scope=_scope(organization))
    assert (signed.base_sequence, signed.base_hash) == (events[-1].sequence, events[-1].hash)
    assert json.loads(signed.document)["base_at"] == events[-1].created_at.isoformat()
    assert checkpoint_breaks("audit", _scope(organization)) == []


def test_an_unwritable_store_stops_the_purge(settings, tmp_path, caplog):
    organization = _org()
    _record_at(organization, THEN, 2)
    (tmp_path / "file").write_text("")
    settings.AQTA_CHECKPOINT_DIR = str(tmp_path / "file" / "store")

    with caplog.at_level("ERROR", logger="aqta.retention"):
        assert audit_chain_purge(scope=_scope(organization), before=THEN + timedelta(days=1)) == 0
    assert any("cannot write to the checkpoint store" in r.getMessage() for r in caplog.records)


def test_a_purge_past_a_checkpoint_is_no_break_but_a_faked_one_is():
    organization = _org()
    _record_at(organization, THEN, 3)
    with time_machine.travel(THEN + timedelta(days=1), tick=False):
        checkpoint_run()
    now = THEN + SEVEN_YEARS + timedelta(days=30)
    recent = _record_at(organization, now - timedelta(days=10), 3)
    retention_purge(now=now)

    with time_machine.travel(now, tick=False):
        assert checkpoint_breaks("audit", _scope(organization)) == []
        assert checkpoint_run().signed >= 1  # the new base and head, signed

        # Someone "purges" recent events by hand and moves the base past them.
        scope = _scope(organization)
        with tamper.triggers_off():
            tamper.sql(
                "DELETE FROM compliance_auditevent WHERE id IN (%s, %s, %s)",
                [e.pk for e in recent],
            )
            tamper.sql(
                "UPDATE compliance_auditchain SET base_sequence = %s, base_hash = %s "
                "WHERE scope = %s",
                [recent[-1].sequence, recent[-1].hash, scope],
            )
        report = audit_chain_report(scope=scope)

    assert not report.valid
    first = report.first_break
    assert first is not None and first.sequence == recent[0].sequence
    assert "were removed without a signed purge" in first.reason


def test_receipts_past_retention_go_with_their_chain_still_verifying():
    organization = _org()
    with time_machine.travel(THEN, tick=False):
        receipts_make(organization, 3, issued=THEN)
    receipts_make(organization, 2, issued=THEN + timedelta(days=3000))

    result = retention_purge(now=THEN + SEVEN_YEARS + timedelta(days=1))

    assert result["receipts"] == 3
    assert Receipt.objects.filter(organization=organization).count() == 2
    assert ReceiptChain.objects.get(organization=organization).base_sequence == 3
    assert receipts_chain_report(organization.pk).valid
    event = AuditEvent.objects.get(
        chain__scope=_scope(organization), action="receipts.retention_purged"
    )
    assert event.data["receipts"] == 3


@tamper.postgresql_only
def test_after_the_purge_the_triggers_refuse_deletes_again():
    organization = _org()
    _record_at(organization, THEN, 2)
    keep = _record_at(organization, THEN + timedelta(days=10), 1)[0]
    with transaction.atomic():  # the purge inside someone else's transaction
        audit_chain_purge(scope=_scope(organization), before=THEN + timedelta(days=1))
        with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
            tamper.sql("DELETE FROM compliance_auditevent WHERE id = %s", [keep.pk])
