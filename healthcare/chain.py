"""Each organisation's receipts as one hash chain, linked after they are stored.

The /v1 path only inserts a receipt (one durable write, no lock: calls of one organisation
never wait for each other). The linker then takes the organisation's unlinked rows in the
order they were inserted, under the lock of the organisation's ``ReceiptChain`` row, and
gives each its place::

    sequence   = head.length + 1
    prev_hash  = head.last_hash                       (64 zeros for the first receipt)
    chain_hash = SHA-256(prev_hash as ASCII hex || the receipt's stored document)

One linker at a time per organisation (the row lock) means no forks; every stored row is
linked by the next pass (in the data plane's background task, the flusher, Celery beat,
and before every read of the receipts API), so no gaps. A row that commits late simply
takes the next free position. The triggers (migration 0002) let the linker set the chain
fields once and refuse every other change.

:func:`chain_verify` walks a chain and names the first break; :func:`receipt_check` checks
one receipt: its signature under the issuer's known keys, its columns against the signed
document, and its position between its neighbours.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, connection, transaction

from healthcare import keyring
from healthcare.models import Receipt, ReceiptChain
from healthcare.receipts import Verdict, receipt_verify

logger = logging.getLogger("aqta.receipts")

ZERO_HASH = "0" * 64
LINK_BATCH = 2_000
VERIFY_CHUNK = 2_000


def chain_hash(prev_hash: str, document: str) -> str:
    """SHA-256 of ``prev_hash || document``. Never raises: text that is not what the linker
    wrote (a non-ASCII ``prev_hash``, a lone surrogate read back from SQLite) hashes to
    something else, which is how the check reports it."""
    data = prev_hash.encode("utf-8", "surrogatepass") + document.encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()


def _head(org_id: Any) -> ReceiptChain:
    """The organisation's chain head, locked (created on first use)."""
    try:
        with transaction.atomic():
            ReceiptChain.objects.get_or_create(organization_id=org_id)
    except IntegrityError:  # created by a concurrent linker
        pass
    return ReceiptChain.objects.select_for_update().get(organization_id=org_id)


def chain_link(org_id: Any, *, batch: int = LINK_BATCH) -> int:
    """Link the organisation's unlinked receipts, oldest first; how many were linked."""
    linked = 0
    while True:
        with transaction.atomic():
            head = _head(org_id)
            rows = list(
                Receipt.objects.filter(organization_id=org_id, sequence__isnull=True)
                .order_by("id")
                .only("id", "document")[:batch]
            )
            for row in rows:
                row.sequence = head.length + 1
                row.prev_hash = head.last_hash
                row.chain_hash = chain_hash(head.last_hash, row.document)
                head.length, head.last_hash = row.sequence, row.chain_hash
            if rows:
                Receipt.objects.bulk_update(rows, ["sequence", "prev_hash", "chain_hash"])
                head.save(update_fields=["length", "last_hash", "updated_at"])
        linked += len(rows)
        if len(rows) < batch:
            return linked


def chain_link_all() -> int:
    """Link every organisation's pending receipts (the background pass)."""
    org_ids = (
        Receipt.objects.filter(sequence__isnull=True)
        .values_list("organization_id", flat=True)
        .distinct()
    )
    return sum(chain_link(org_id) for org_id in list(org_ids))


# --- verification -------------------------------------------------------------------------


@dataclass
class ChainVerdict:
    """A chain's state: valid, or the first break and why."""

    valid: bool
    length: int
    checked: int
    reason: str = ""
    sequence: int | None = None  # where the first break is
    receipt_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "length": self.length,
            "checked": self.checked,
            "first_break": (
                None
                if self.valid
                else {
                    "sequence": self.sequence,
                    "receipt_id": self.receipt_id,
                    "reason": self.reason,
                }
            ),
        }


def _document(row: Receipt) -> tuple[dict[str, Any] | None, str]:
    try:
        value = json.loads(row.document)
    except (ValueError, TypeError):
        return None, "the stored document is not JSON"
    except RecursionError:  # json gives up some thousand levels deep
        return None, "the stored document is nested too deeply to read"
    if not isinstance(value, dict):
        return None, "the stored document is not a JSON object"
    return value, ""


_COLUMNS = (
    ("attestation_id", lambda row: str(row.attestation_id)),
    ("trace_id", lambda row: row.trace_id),
    ("org_id", lambda row: str(row.organization_id)),
    ("model", lambda row: row.model),
    ("outcome", lambda row: row.outcome),
)


def _columns_reason(row: Receipt, document: dict[str, Any]) -> str:
    for name, column in _COLUMNS:
        if document.get(name) != column(row):
            return f"the row's {name} does not match the signed receipt"
    issued = _timestamp(document.get("timestamp"))
    if issued is None or abs((issued - row.issued_at).total_seconds()) > 0.001:
        return "the row's issue time does not match the signed receipt"
    return ""


def _timestamp(value: object) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _window_reason(document: dict[str, Any], verdict: Verdict) -> str:
    key = keyring.key_for(verdict.key_id)
    issued = _timestamp(document.get("timestamp"))
    if key is None or issued is None:
        return ""
    grace = timedelta(seconds=keyring.WINDOW_GRACE_SECONDS)
    if issued < key.activated_at - grace or (key.retired_at and issued > key.retired_at + grace):
        return f"signed by key {key.key_id} outside its validity window"
    return ""


def document_check(document: object) -> Verdict:
    """A receipt document (stored or submitted): fields, signature under a known issuer
    key, and a timestamp inside that key's validity window."""
    verdict = receipt_verify(document, keyring.public_keys())
    if verdict.valid and isinstance(document, dict):
        if reason := _window_reason(document, verdict):
            return Verdict(False, reason, verdict.key_id)
    return verdict


def _row_reason(row: Receipt, prev_hash: str) -> str:
    """Why a stored row is not what was issued, or ""."""
    document, reason = _document(row)
    if document is None:
        return reason
    verdict = document_check(document)
    if not verdict.valid:
        return verdict.reason
    if reason := _columns_reason(row, document):
        return reason
    if row.prev_hash != prev_hash:
        return "its prev_hash is not the previous receipt's chain_hash (removed or reordered)"
    if row.chain_hash != chain_hash(row.prev_hash, row.document):
        return "its chain_hash does not match its contents"
    return ""


def _linked(org_id: Any) -> Iterator[Receipt]:
    """The organisation's linked receipts in chain order, in chunks (constant memory)."""
    after = -1
    while True:
        rows = list(
            Receipt.objects.filter(
                organization_id=org_id, sequence__isnull=False, sequence__gt=after
            ).order_by("sequence")[:VERIFY_CHUNK]
        )
        yield from rows
        if len(rows) < VERIFY_CHUNK:
            return
        after = rows[-1].sequence or after


def _walk(org_id: Any) -> ChainVerdict:
    """Walk the organisation's receipt chain from its base to its head; the first break."""
    chain_link(org_id)
    head = ReceiptChain.objects.filter(organization_id=org_id).first()
    if head is None:
        return ChainVerdict(True, 0, 0)
    expected, prev, checked = head.base_sequence + 1, head.base_hash, 0
    for row in _linked(org_id):
        if row.sequence != expected:
            reason = f"receipts {expected} to {(row.sequence or 0) - 1} are missing"
            return ChainVerdict(False, head.length, checked, reason, expected, row.pk)
        if reason := _row_reason(row, prev):
            return ChainVerdict(False, head.length, checked, reason, row.sequence, row.pk)
        prev, expected, checked = row.chain_hash, expected + 1, checked + 1
    if expected - 1 != head.length or prev != head.last_hash:
        reason = (
            f"the chain ends at {expected - 1} but its head says {head.length}: "
            "the newest receipts were removed"
            if expected - 1 < head.length
            else "the chain head does not match its last receipt"
        )
        return ChainVerdict(False, head.length, checked, reason, expected, None)
    return ChainVerdict(True, head.length, checked)


def chain_verify(org_id: Any) -> ChainVerdict:
    """The organisation's receipt chain, walked from its base to its head, then held
    against its newest signed checkpoint (kept outside the database: a chain truncated
    together with its head, re-hashed or deleted shows there); the first break."""
    from compliance.checkpoints import checkpoint_breaks

    verdict = _walk(org_id)
    if not verdict.valid:
        return verdict
    breaks = checkpoint_breaks("receipts", str(org_id))
    if breaks:
        first = breaks[0]
        return ChainVerdict(
            False, verdict.length, verdict.checked, f"checkpoint: {first.reason}", first.sequence
        )
    return verdict


@dataclass(frozen=True)
class ReceiptCheck:
    valid: bool
    reason: str
    key_id: str | None
    signature_valid: bool
    chain_valid: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "reason": self.reason,
            "key_id": self.key_id,
            "signature_valid": self.signature_valid,
            "chain_valid": self.chain_valid,
        }


def _position_reason(row: Receipt) -> str:
    if row.sequence is None:
        return "the receipt is not linked into its chain"
    if row.chain_hash != chain_hash(row.prev_hash, row.document):
        return "its chain_hash does not match its contents"
    head = ReceiptChain.objects.filter(organization_id=row.organization_id).first()
    base_sequence, base_hash = (head.base_sequence, head.base_hash) if head else (0, ZERO_HASH)
    siblings = Receipt.objects.filter(organization_id=row.organization_id)
    if row.sequence == base_sequence + 1:
        previous_hash: str | None = base_hash
    else:
        previous = siblings.filter(sequence=row.sequence - 1).only("chain_hash").first()
        previous_hash = previous.chain_hash if previous else None
    if previous_hash is None:
        return f"receipt {row.sequence - 1}, before it in the chain, is missing"
    if previous_hash != row.prev_hash:
        return "its prev_hash is not the previous receipt's chain_hash (removed or reordered)"
    following = siblings.filter(sequence=row.sequence + 1).only("prev_hash").first()
    if following is not None and following.prev_hash != row.chain_hash:
        return "the next receipt does not link to it"
    if following is None and head is not None and head.length > row.sequence:
        return f"receipt {row.sequence + 1}, after it in the chain, is missing"
    return ""


def receipt_check(row: Receipt) -> ReceiptCheck:
    """One stored receipt: signature and fields, the row against its document, and its
    position in the chain. Never raises on a corrupted row."""
    if row.sequence is None:
        chain_link(row.organization_id)
        row.refresh_from_db()
    document, reason = _document(row)
    verdict = document_check(document) if document is not None else Verdict(False, reason)
    signature_ok = verdict.valid
    if signature_ok and document is not None:
        reason = _columns_reason(row, document)
    else:
        reason = verdict.reason
    position = _position_reason(row)
    valid = signature_ok and not reason and not position
    return ReceiptCheck(valid, reason or position, verdict.key_id, signature_ok, not position)


# --- retention ----------------------------------------------------------------------------


def receipts_purge(org_id: Any, before: datetime) -> int:
    """Delete the organisation's linked receipts issued before ``before`` (oldest first,
    a whole prefix of the chain), moving the chain's base past them so that what remains
    still verifies. The one DELETE the trigger allows."""
    chain_link(org_id)
    with transaction.atomic():
        head = _head(org_id)
        doomed = Receipt.objects.filter(
            organization_id=org_id, sequence__isnull=False, issued_at__lt=before
        )
        # Only a prefix: stop at the first receipt that must stay.
        keep = (
            Receipt.objects.filter(organization_id=org_id, sequence__isnull=False)
            .filter(issued_at__gte=before)
            .order_by("sequence")
            .values_list("sequence", flat=True)
            .first()
        )
        if keep is not None:
            doomed = doomed.filter(sequence__lt=keep)
        last = doomed.order_by("-sequence").only("sequence", "chain_hash").first()
        if last is None:
            return 0
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL aqta.retention_purge = 'on'")
        deleted, _ = doomed.delete()
        head.base_sequence, head.base_hash = last.sequence or 0, last.chain_hash
        head.save(update_fields=["base_sequence", "base_hash", "updated_at"])
    logger.info("purged %d receipts of %s through %s", deleted, org_id, last.sequence)
    return deleted
