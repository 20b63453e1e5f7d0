"""``manage.py trace_dead_letters``: the admin's dead-letter page, for scripts."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from compliance.models import AuditEvent
from gateway.models import Trace, TraceDeadLetter
from gateway.tests.dead_letter_data import dead_letter


@pytest.fixture
def letters(org, api_key):
    return dead_letter(org, api_key[0]), dead_letter(org, api_key[0], latency_ms="slow")


def run(*args: str) -> str:
    out = StringIO()
    call_command("trace_dead_letters", *args, stdout=out)
    return out.getvalue()


def test_it_lists_every_dead_letter_with_its_error(letters):
    lines = run().splitlines()

    assert [line.split("\t")[0] for line in lines] == [str(x.pk) for x in letters]
    assert all("expected a number" in line for line in lines)


def test_replay_stores_what_fits_now_and_keeps_the_rest(letters):
    fixed, broken = letters

    assert run("--replay").strip() == "Stored 1; 1 still failing."

    assert Trace.objects.filter(id=fixed.trace_id).exists()
    assert list(TraceDeadLetter.objects.values_list("pk", flat=True)) == [broken.pk]
    assert AuditEvent.objects.get(action="trace_dead_letters.replayed").actor_label == "cli"


def test_discard_deletes_only_the_ids_given(letters):
    first, second = letters

    assert run("--discard", str(second.pk)).strip() == "Discarded 1."

    assert list(TraceDeadLetter.objects.values_list("pk", flat=True)) == [first.pk]
    assert AuditEvent.objects.get(action="trace_dead_letters.discarded").data["trace_ids"] == [
        second.trace_id
    ]
