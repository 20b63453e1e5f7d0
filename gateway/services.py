"""Operators' writes on the gateway's records: replaying or discarding dead letters.

Both are audited in the global chain: a discarded dead letter is a call whose trace is
gone for good, and a replay adds traces and usage after the fact.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db.models import QuerySet
from django.http import HttpRequest

from compliance.services import audit_event_record
from gateway import storage as traces
from gateway.models import TraceDeadLetter

if TYPE_CHECKING:
    from accounts.models import User

# Trace ids named in an audit event; a larger discard names the first ones and the count.
AUDITED_IDS = 100


def _audit(action: str, letters: list[TraceDeadLetter], data: dict[str, Any], **who: Any) -> None:
    audit_event_record(
        action=action,
        data={**data, "trace_ids": [letter.trace_id for letter in letters[:AUDITED_IDS]]},
        **who,
    )


def dead_letters_replay(
    *,
    letters: QuerySet[TraceDeadLetter],
    actor: User | None = None,
    actor_label: str = "",
    request: HttpRequest | None = None,
) -> tuple[int, int]:
    """Store the selected dead letters again: (stored, still failing).

    Raises ``traces.StorageUnavailable`` when nothing can be stored at the moment.
    """
    selected = list(letters.order_by("pk"))
    stored, failing = traces.dead_letters_replay(selected)
    _audit(
        "trace_dead_letters.replayed",
        selected,
        {"stored": stored, "still_failing": failing},
        actor=actor,
        actor_label=actor_label,
        request=request,
    )
    return stored, failing


def dead_letters_discard(
    *,
    letters: QuerySet[TraceDeadLetter],
    actor: User | None = None,
    actor_label: str = "",
    request: HttpRequest | None = None,
) -> int:
    """Delete the selected dead letters for good; returns how many."""
    selected = list(letters.order_by("pk"))
    TraceDeadLetter.objects.filter(pk__in=[letter.pk for letter in selected]).delete()
    _audit(
        "trace_dead_letters.discarded",
        selected,
        {"discarded": len(selected)},
        actor=actor,
        actor_label=actor_label,
        request=request,
    )
    return len(selected)
