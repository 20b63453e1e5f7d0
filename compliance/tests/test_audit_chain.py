from __future__ import annotations

import pytest

from accounts.services import organization_create
from accounts.tests.factories import UserFactory
from billing.selectors import tier_get
from compliance.models import AuditChain, AuditEvent
from compliance.services import audit_chain_verify, audit_event_record

pytestmark = pytest.mark.django_db


def test_events_are_chained_by_hash_in_sequence(org):
    first = audit_event_record(action="test.one", organization=org, data={"n": 1})
    second = audit_event_record(action="test.two", organization=org, data={"n": 2})

    assert second.sequence == first.sequence + 1
    assert second.prev_hash == first.hash
    chain = AuditChain.objects.get(scope=str(org.pk))
    assert chain.last_hash == second.hash and chain.length == second.sequence
    assert audit_chain_verify(scope=str(org.pk)) is None


def test_editing_a_recorded_event_breaks_the_chain_at_that_event(org):
    audit_event_record(action="test.one", organization=org)
    victim = audit_event_record(action="test.two", organization=org, data={"amount": 1})
    audit_event_record(action="test.three", organization=org)

    AuditEvent.objects.filter(pk=victim.pk).update(data={"amount": 1000})

    assert audit_chain_verify(scope=str(org.pk)) == victim.sequence


def test_deleting_an_event_breaks_the_chain(org):
    audit_event_record(action="test.one", organization=org)
    gone = audit_event_record(action="test.two", organization=org)
    after = audit_event_record(action="test.three", organization=org)
    AuditEvent.objects.filter(pk=gone.pk).delete()

    assert audit_chain_verify(scope=str(org.pk)) == after.sequence


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
