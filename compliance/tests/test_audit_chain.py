from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from accounts.services import organization_create
from accounts.tests.factories import UserFactory
from billing.selectors import tier_get
from compliance.hashing import event_hash_of
from compliance.models import AuditChain, AuditEvent
from compliance.services import audit_event_record, event_hash
from compliance.tests import tamper
from compliance.verify import audit_chain_report

pytestmark = pytest.mark.django_db


def test_events_are_chained_by_hash_in_sequence(org):
    first = audit_event_record(action="test.one", organization=org, data={"n": 1})
    second = audit_event_record(action="test.two", organization=org, data={"n": 2})

    assert second.sequence == first.sequence + 1
    assert second.prev_hash == first.hash
    chain = AuditChain.objects.get(scope=str(org.pk))
    assert chain.last_hash == second.hash and chain.length == second.sequence
    report = audit_chain_report(scope=str(org.pk))
    assert report.valid and report.first_break is None
    assert report.checked == report.length == second.sequence


def test_the_hash_is_the_one_every_recorded_event_carries():
    """Events recorded before this version keep verifying: the algorithm's output for
    these two events was computed with the code that recorded the first events."""
    org = uuid.UUID("6f1c1a2e-9b7d-4c3a-8e2f-1a2b3c4d5e6f")
    chained = AuditEvent(
        chain=AuditChain(scope=str(org)),
        sequence=3,
        organization_id=org,
        actor_label="ada@example.com",
        action="api_key.created",
        target="k1",
        ip="192.0.2.7",
        data={"name": "ci", "n": 1, "nested": {"b": [1, 2], "a": "Größe"}},
        created_at=datetime(2026, 11, 30, 8, 15, 0, 123456, tzinfo=UTC),
        prev_hash="ab" * 32,
    )
    assert event_hash(chained) == (
        "80c7ee4bc45975f334c5bb6ce8bf3d64d6d426bca070aa3df0d85f56bf16d9bf"
    )
    user_level = AuditEvent(
        chain=AuditChain(scope="global"),
        sequence=1,
        actor_label="",
        action="auth.login_failed",
        target="x@example.com",
        data={},
        created_at=datetime(2026, 11, 30, 8, 15, tzinfo=UTC),
        prev_hash="0" * 64,
    )
    assert event_hash(user_level) == (
        "1914e52dfa0dc275471ce2d82545ae784ad5c0cdacd024d7c2dacbd1f85892ba"
    )
    # The organisation hashed is the chain's: a deleted organisation (NULL) changes nothing.
    chained.organization_id = None
    assert event_hash_of(chained, str(org)) == event_hash(chained)


def test_nul_characters_in_data_are_stored_and_still_verify(org):
    event = audit_event_record(
        action="test.nul", organization=org, data={"q\x00": ["a\x00b", {"c": "\x00"}]}
    )
    stored = AuditEvent.objects.get(pk=event.pk)
    assert stored.data == {"q\ufffd": ["a\ufffdb", {"c": "\ufffd"}]}
    assert audit_chain_report(scope=str(org.pk)).valid


def test_editing_a_recorded_event_breaks_the_chain_at_that_event(org):
    audit_event_record(action="test.one", organization=org)
    victim = audit_event_record(action="test.two", organization=org, data={"amount": 1})
    audit_event_record(action="test.three", organization=org)

    tamper.edit_event(str(org.pk), victim.sequence, data={"amount": 1000})

    report = audit_chain_report(scope=str(org.pk))
    assert not report.valid
    assert report.sequence == victim.sequence
    assert report.first_break is not None and report.first_break.row_id == victim.pk
    assert "altered" in report.first_break.reason


def test_deleting_an_event_breaks_the_chain(org):
    audit_event_record(action="test.one", organization=org)
    gone = audit_event_record(action="test.two", organization=org)
    after = audit_event_record(action="test.three", organization=org)
    with tamper.triggers_off():
        tamper.sql("DELETE FROM compliance_auditevent WHERE id = %s", [gone.pk])

    report = audit_chain_report(scope=str(org.pk))
    assert report.sequence == gone.sequence
    assert report.first_break is not None and report.first_break.row_id == after.pk
    assert report.first_break.reason == f"events {gone.sequence} to {gone.sequence} are missing"


def test_moving_an_event_to_another_organisation_breaks_the_chain(org):
    other = organization_create(name="Other", owner=UserFactory.create())
    moved = audit_event_record(action="test.one", organization=org)

    tamper.edit_event(str(org.pk), moved.sequence, organization_id=tamper.uuid_value(other.pk))

    report = audit_chain_report(scope=str(org.pk))
    assert report.sequence == moved.sequence
    assert "organisation is not its chain's" in report.first_break.reason  # type: ignore[union-attr]


def test_removing_the_newest_events_is_found_by_the_head(org):
    audit_event_record(action="test.one", organization=org)
    newest = audit_event_record(action="test.two", organization=org)
    with tamper.triggers_off():
        tamper.sql("DELETE FROM compliance_auditevent WHERE id = %s", [newest.pk])

    report = audit_chain_report(scope=str(org.pk))
    assert report.sequence == newest.sequence
    assert "the newest events were removed" in report.first_break.reason  # type: ignore[union-attr]


def test_a_head_that_does_not_match_its_last_event_is_a_break(org):
    last = audit_event_record(action="test.one", organization=org)
    with tamper.triggers_off():
        tamper.sql(
            "UPDATE compliance_auditchain SET last_hash = %s WHERE scope = %s",
            ["f" * 64, str(org.pk)],
        )

    report = audit_chain_report(scope=str(org.pk))
    assert report.sequence == last.sequence
    assert report.first_break.reason == "the chain head's hash does not match its last event"  # type: ignore[union-attr]


def test_each_organisation_has_its_own_chain(org):
    other = organization_create(
        name="Other", owner=UserFactory.create(), tier=tier_get(slug="free")
    )
    mine = audit_event_record(action="test.mine", organization=org)
    theirs = audit_event_record(action="test.theirs", organization=other)
    user_level = audit_event_record(action="test.global")

    assert mine.chain != theirs.chain
    assert user_level.chain.scope == "global"
    assert theirs.sequence == 2  # after its own "organization.created"


def test_deleting_the_organisation_keeps_its_chain_verifiable(org, user):
    audit_event_record(action="test.one", organization=org, actor=user)
    scope = str(org.pk)
    org.delete()
    user.delete()

    assert AuditEvent.objects.filter(chain__scope=scope, organization__isnull=True).count() == 2
    assert audit_chain_report(scope=scope).valid
