"""The retention purge of the compliance records: audit events and receipts (docs/audit.md).

The hourly retention purge (``compliance.retention``) calls :func:`compliance_purge`
after the traces. What goes is always the oldest part of a chain (a prefix) that is past
its retention (``compliance.audit_retention``), in batches. For each batch:

1. the batch is checked: every row of it links, so evidence of tampering is never purged
   away (the purge stops before a break and logs it);
2. the chain's head is signed with the base the batch will leave (its last sequence, hash
   and time) and stored, before anything is deleted (``checkpoint_purge_sign``): a base
   that moved without such a checkpoint is a break, and a signed base that is recent is
   a purge before the retention ended;
3. one transaction declares itself the purge (``SET LOCAL aqta.retention_purge = 'on'``,
   the one DELETE the triggers allow), deletes the batch and moves the chain's base, so
   that what remains still verifies.

Receipts go through ``healthcare.chain.receipts_purge``, after the same check and signed
base. Each purge is itself recorded in the chain's organisation's audit trail
(``audit.retention_purged``, ``receipts.retention_purged``).
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from django.db import connection, transaction

from compliance import chains
from compliance.audit_retention import audit_retention_cutoff, scope_organization
from compliance.checkpoints import PurgeRefused, StoreError, checkpoint_purge_sign
from compliance.models import AuditChain, AuditEvent, ChainKind
from compliance.services import audit_event_record
from healthcare.chain import chain_link, receipts_purge
from healthcare.models import Receipt, ReceiptChain

logger = logging.getLogger("aqta.retention")
BATCH = 5_000


def _purge_declare(on: bool) -> None:
    """Declare the purge to the triggers, for this transaction (``off`` ends it early,
    should the caller's transaction go on)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL aqta.retention_purge = '{'on' if on else 'off'}'")


def _sound_through(kind: str, head: chains.Head, upto: int) -> int:
    """How far from the base, up to ``upto``, the chain links (the purge stops there)."""
    found, reached, _ = chains.links_walk(
        kind, head.scope, after=head.base_sequence, prev_hash=head.base_hash, upto=upto
    )
    if found is not None:
        logger.error(
            "%s purge of %s stops before %s: %s", kind, head.scope, found.sequence, found.reason
        )
    return reached


def _signed_base(kind: str, head: chains.Head, through: int) -> bool:
    """Sign the base the purge will leave; False (logged) when it must not go ahead."""
    link = chains.link_at(kind, head.scope, through)
    if link is None:
        return False
    try:
        checkpoint_purge_sign(
            kind, head.scope, through=through, through_hash=link.hash, through_at=link.at
        )
    except (PurgeRefused, StoreError) as error:
        logger.error("%s purge of %s refused: %s", kind, head.scope, error)
        return False
    return True


# --- audit events -------------------------------------------------------------------------


def _audit_batch_end(head: chains.Head, before: datetime, keep: int | None, batch: int) -> int:
    """The last sequence of the next batch: old, a prefix, and sound."""
    doomed = AuditEvent.objects.filter(
        chain__scope=head.scope, sequence__gt=head.base_sequence, created_at__lt=before
    )
    if keep is not None:
        doomed = doomed.filter(sequence__lt=keep)
    sequences = doomed.order_by("sequence").values_list("sequence", flat=True)
    upto = next(iter(sequences[batch - 1 : batch]), None) or sequences.last()
    if upto is None:
        return head.base_sequence
    return _sound_through(ChainKind.AUDIT, head, upto)


def _audit_delete(scope: str, base: int, upto: int) -> int:
    """Delete the chain's events from ``base`` to ``upto`` and move its base, in one
    transaction; 0 if another purge moved the base meanwhile."""
    with transaction.atomic():
        chain = AuditChain.objects.select_for_update().get(scope=scope)
        if chain.base_sequence != base:
            return 0
        last = AuditEvent.objects.get(chain=chain, sequence=upto)
        _purge_declare(True)
        deleted, _ = AuditEvent.objects.filter(chain=chain, sequence__lte=upto).delete()
        chain.base_sequence, chain.base_hash = upto, last.hash
        chain.save(update_fields=["base_sequence", "base_hash"])
        _purge_declare(False)
    return deleted


def _audit_batch(scope: str, before: datetime, keep: int | None, batch: int) -> int:
    head = chains.head_get(ChainKind.AUDIT, scope)
    if head is None:
        return 0
    upto = _audit_batch_end(head, before, keep, batch)
    if upto <= head.base_sequence or not _signed_base(ChainKind.AUDIT, head, upto):
        return 0
    return _audit_delete(scope, head.base_sequence, upto)


def audit_chain_purge(*, scope: str, before: datetime, batch: int = BATCH) -> int:
    """Delete the chain's events recorded before ``before`` (the oldest first, up to the
    first event that must stay); how many were deleted."""
    events = AuditEvent.objects.filter(chain__scope=scope)
    if not events.filter(created_at__lt=before).exists():
        return 0  # the usual case: no transaction, no lock
    keep = (
        events.filter(created_at__gte=before)
        .order_by("sequence")
        .values_list("sequence", flat=True)
        .first()
    )
    deleted = 0
    while count := _audit_batch(scope, before, keep, batch):
        deleted += count
        if count < batch:
            break
    if deleted:
        audit_event_record(
            action="audit.retention_purged",
            organization=scope_organization(scope),
            actor_label="retention",
            target=scope,
            data={"events": deleted, "before": before.isoformat()},
        )
    return deleted


# --- receipts -----------------------------------------------------------------------------


def _receipts_purge_end(org_id: uuid.UUID, before: datetime) -> int | None:
    """The last sequence ``receipts_purge`` will delete (its rule: linked, issued before
    ``before``, a prefix), or None for none."""
    linked = Receipt.objects.filter(organization_id=org_id, sequence__isnull=False)
    keep = (
        linked.filter(issued_at__gte=before)
        .order_by("sequence")
        .values_list("sequence", flat=True)
        .first()
    )
    doomed = linked.filter(issued_at__lt=before)
    if keep is not None:
        doomed = doomed.filter(sequence__lt=keep)
    return doomed.order_by("-sequence").values_list("sequence", flat=True).first()


def _receipts_purge(org_id: uuid.UUID, now: datetime) -> int:
    scope = str(org_id)
    cutoff = audit_retention_cutoff(kind=ChainKind.RECEIPTS, scope=scope, now=now)
    if (
        cutoff is None
        or not Receipt.objects.filter(organization_id=org_id, issued_at__lt=cutoff).exists()
    ):
        return 0
    chain_link(org_id)
    head = chains.head_get(ChainKind.RECEIPTS, scope)
    upto = _receipts_purge_end(org_id, cutoff)
    if head is None or upto is None or upto <= head.base_sequence:
        return 0
    if _sound_through(ChainKind.RECEIPTS, head, upto) < upto:
        return 0  # receipts_purge takes the whole prefix: none of it while it is broken
    if not _signed_base(ChainKind.RECEIPTS, head, upto):
        return 0
    deleted = receipts_purge(org_id, cutoff)
    audit_event_record(
        action="receipts.retention_purged",
        organization=scope_organization(scope),
        actor_label="retention",
        target=scope,
        data={"receipts": deleted, "before": cutoff.isoformat()},
    )
    return deleted


def compliance_purge(*, now: datetime) -> dict[str, int]:
    """Every chain's audit events, and every organisation's receipts, past retention."""
    events = 0
    for scope in AuditChain.objects.order_by("scope").values_list("scope", flat=True):
        cutoff = audit_retention_cutoff(kind=ChainKind.AUDIT, scope=scope, now=now)
        if cutoff is not None:
            events += audit_chain_purge(scope=scope, before=cutoff)
    receipts = 0
    org_ids = ReceiptChain.objects.order_by("organization_id").values_list(
        "organization_id", flat=True
    )
    for org_id in org_ids:
        receipts += _receipts_purge(org_id, now)
    if events or receipts:
        logger.info("compliance purge: %d audit events, %d receipts", events, receipts)
    return {"audit_events": events, "receipts": receipts}
