"""The append-only triggers (compliance migration 0003), driven with raw SQL as anyone with
a database login would: what they refuse, and the few changes they let through."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from compliance.checkpoints import checkpoint_run
from compliance.models import AuditChain, AuditEvent, ChainCheckpoint
from compliance.services import audit_event_record
from compliance.tests.tamper import postgresql_only, sql

pytestmark = [pytest.mark.django_db, postgresql_only]


def refused(statement: str, params=(), *, match: str | None = None) -> None:
    with pytest.raises(IntegrityError, match=match), transaction.atomic():
        sql(statement, params)


@pytest.fixture
def events(org):
    audit_event_record(action="test.one", organization=org, data={"n": 1})
    audit_event_record(action="test.two", organization=org, data={"n": 2})
    return list(AuditEvent.objects.filter(chain__scope=str(org.pk)).order_by("sequence"))


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("data", '{"n": 1000}'),
        ("action", "test.other"),
        ("hash", "f" * 64),
        ("prev_hash", "0" * 64),
        ("created_at", "2020-01-01T00:00:00Z"),
        ("sequence", 99),
        ("actor_label", "someone@else.example"),
    ],
)
def test_no_column_of_an_event_can_be_updated(events, column, value):
    refused(
        f"UPDATE compliance_auditevent SET {column} = %s WHERE id = %s",
        [value, events[-1].pk],
        match="append-only: UPDATE",
    )


def test_an_event_cannot_be_moved_to_another_organisation_or_actor(events, user):
    refused(
        "UPDATE compliance_auditevent SET organization_id = gen_random_uuid() WHERE id = %s",
        [events[0].pk],
    )
    refused(
        "UPDATE compliance_auditevent SET actor_id = %s WHERE id = %s",
        [user.pk + 1000, events[0].pk],
    )
    assert AuditEvent.objects.get(pk=events[0].pk).organization_id == events[0].organization_id


def test_deleting_a_user_or_organisation_only_detaches_their_events(events, org, user):
    """Django's ON DELETE SET NULL is the one UPDATE let through."""
    sql("UPDATE compliance_auditevent SET actor_id = NULL WHERE id = %s", [events[0].pk])
    org.delete()
    user.delete()
    assert (
        not AuditEvent.objects.filter(pk__in=[e.pk for e in events])
        .exclude(organization=None, actor=None)
        .exists()
    )


def test_events_cannot_be_deleted(events):
    refused("DELETE FROM compliance_auditevent WHERE id = %s", [events[-1].pk], match="DELETE")
    refused("DELETE FROM compliance_auditevent", match="append-only")
    assert AuditEvent.objects.filter(pk=events[-1].pk).exists()


def test_only_the_declared_retention_purge_deletes(events):
    with transaction.atomic():
        sql("SET LOCAL aqta.retention_purge = 'on'")
        sql("DELETE FROM compliance_auditevent WHERE id = %s", [events[0].pk])
    assert not AuditEvent.objects.filter(pk=events[0].pk).exists()


@pytest.mark.parametrize(
    "table", ["compliance_auditevent", "compliance_auditchain", "compliance_chaincheckpoint"]
)
def test_truncate_is_refused(events, table):
    with pytest.raises(IntegrityError, match="TRUNCATE refused"), transaction.atomic():
        sql("SET LOCAL aqta.allow_truncate = 'off'")  # the test database allows it
        sql("SET CONSTRAINTS ALL IMMEDIATE")  # no pending foreign-key checks in the way
        sql(f"TRUNCATE {table} CASCADE")


def head(org) -> AuditChain:
    return AuditChain.objects.get(scope=str(org.pk))


def test_a_head_grows_with_its_appends(events, org):
    before = head(org)
    audit_event_record(action="test.three", organization=org)
    after = head(org)
    assert after.length == before.length + 1 and after.last_hash != before.last_hash


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ("length = length - 1", "only grows"),
        ("length = 0, last_hash = repeat('0', 64)", "only grows"),
        ("last_hash = repeat('f', 64)", "changes only with an append"),
        ("scope = 'global-2'", "keeps its id and scope"),
        ("base_sequence = 1", "base moves only forward"),
    ],
)
def test_a_head_never_shrinks_or_changes_otherwise(events, org, change, match):
    refused(
        f"UPDATE compliance_auditchain SET {change} WHERE scope = %s", [str(org.pk)], match=match
    )


def test_a_head_is_never_deleted(events, org):
    refused("DELETE FROM compliance_auditchain WHERE scope = %s", [str(org.pk)], match="never")


def test_the_purge_moves_the_base_forward_only(events, org):
    chain = head(org)
    with transaction.atomic():
        sql("SET LOCAL aqta.retention_purge = 'on'")
        sql(
            "UPDATE compliance_auditchain SET base_sequence = 1, base_hash = %s WHERE id = %s",
            [events[0].hash, chain.pk],
        )
    assert head(org).base_sequence == 1
    for base in (0, 1, chain.length + 1):  # back, unchanged sequence, past the head
        with pytest.raises(IntegrityError, match="base"), transaction.atomic():
            sql("SET LOCAL aqta.retention_purge = 'on'")
            sql(
                "UPDATE compliance_auditchain SET base_sequence = %s, base_hash = %s WHERE id = %s",
                [base, "e" * 64, chain.pk],
            )


def test_checkpoints_are_never_changed_or_deleted(events):
    checkpoint_run()
    row = ChainCheckpoint.objects.first()
    assert row is not None
    refused(
        "UPDATE compliance_chaincheckpoint SET length = 0 WHERE id = %s", [row.pk], match="never"
    )
    refused("DELETE FROM compliance_chaincheckpoint WHERE id = %s", [row.pk], match="never")
    with transaction.atomic():  # not even in the purge
        sql("SET LOCAL aqta.retention_purge = 'on'")
        with pytest.raises(IntegrityError), transaction.atomic():
            sql("DELETE FROM compliance_chaincheckpoint")
