"""The two kinds of hash chain, seen the same way: audit chains and receipt chains.

An audit chain is ``AuditChain`` + its ``AuditEvent`` rows (scope: an organisation id or
``global``); a receipt chain is ``healthcare.ReceiptChain`` + the organisation's linked
``Receipt`` rows (scope: the organisation id). Both have a head (length, last hash, and a
base the retention purge moves forward) and links (sequence, prev_hash, hash). The
checkpoints and the verifiers read them through :class:`Head`, :class:`Link` and
:func:`links_walk`, so one piece of code checks both.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import QuerySet

from compliance.hashing import GLOBAL_SCOPE, HASHED, ZERO_HASH, chained_hash, event_hash_of
from compliance.models import AuditChain, AuditEvent, ChainKind
from healthcare.chain import chain_hash
from healthcare.models import Receipt, ReceiptChain

CHUNK = 2_000
KINDS = (ChainKind.AUDIT.value, ChainKind.RECEIPTS.value)


@dataclass(frozen=True)
class Head:
    """A chain's head as the database holds it."""

    kind: str
    scope: str
    length: int
    last_hash: str
    base_sequence: int = 0
    base_hash: str = ZERO_HASH


@dataclass(frozen=True)
class Link:
    """One row of a chain: where it stands, what it links to, and whether its stored hash
    is the hash of its contents (``intact``)."""

    sequence: int
    row_id: int
    prev_hash: str
    hash: str
    intact: bool
    at: datetime
    foreign: bool = False  # an audit event whose organisation is not its chain's


@dataclass(frozen=True)
class LinkBreak:
    sequence: int
    row_id: int | None
    reason: str


def _organization_id(scope: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(scope)
    except ValueError:
        return None


def kind_check(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    return kind


# --- heads --------------------------------------------------------------------------------


def _audit_head(chain: AuditChain) -> Head:
    return Head(
        ChainKind.AUDIT,
        chain.scope,
        chain.length,
        chain.last_hash,
        chain.base_sequence,
        chain.base_hash,
    )


def _receipts_head(chain: ReceiptChain) -> Head:
    return Head(
        ChainKind.RECEIPTS,
        str(chain.organization_id),
        chain.length,
        chain.last_hash,
        chain.base_sequence,
        chain.base_hash,
    )


def head_get(kind: str, scope: str) -> Head | None:
    """The chain's head, or None when the database has none."""
    if kind_check(kind) == ChainKind.AUDIT:
        chain = AuditChain.objects.filter(scope=scope).first()
        return _audit_head(chain) if chain is not None else None
    org_id = _organization_id(scope)
    if org_id is None:
        return None
    receipts = ReceiptChain.objects.filter(organization_id=org_id).first()
    return _receipts_head(receipts) if receipts is not None else None


def heads_all() -> Iterator[Head]:
    """Every chain head of both kinds, in a stable order."""
    for chain in AuditChain.objects.order_by("scope").iterator(chunk_size=CHUNK):
        yield _audit_head(chain)
    for receipts in ReceiptChain.objects.order_by("organization_id").iterator(chunk_size=CHUNK):
        yield _receipts_head(receipts)


# --- links --------------------------------------------------------------------------------


def _audit_link(event: AuditEvent, scope: str, org_id: uuid.UUID | None) -> Link:
    foreign = event.organization_id is not None and event.organization_id != org_id
    intact = event_hash_of(event, scope) == event.hash
    return Link(
        event.sequence, event.pk, event.prev_hash, event.hash, intact, event.created_at, foreign
    )


def _receipt_link(row: Receipt) -> Link:
    intact = row.chain_hash == chain_hash(row.prev_hash, row.document)
    return Link(row.sequence or 0, row.pk, row.prev_hash, row.chain_hash, intact, row.issued_at)


def _audit_org(scope: str) -> uuid.UUID | None:
    return None if scope == GLOBAL_SCOPE else _organization_id(scope)


_AUDIT_COLUMNS = ("pk", "organization_id", "hash", *HASHED)


def _audit_links(scope: str, after: int) -> Iterator[Link]:
    """Read as plain values, not model instances: twice as fast for a long chain."""
    org_id = _audit_org(scope)
    events = AuditEvent.objects.filter(chain__scope=scope).order_by("sequence")
    while True:
        rows = list(events.filter(sequence__gt=after).values_list(*_AUDIT_COLUMNS)[:CHUNK])
        for pk, organization_id, stored, *hashed in rows:
            intact = chained_hash(scope, *hashed) == stored
            foreign = organization_id is not None and organization_id != org_id
            # hashed: sequence, actor_label, action, target, ip, data, created_at, prev_hash
            yield Link(hashed[0], pk, hashed[7], stored, intact, hashed[6], foreign)
        if len(rows) < CHUNK:
            return
        after = rows[-1][3]


def _receipt_rows(scope: str) -> QuerySet[Receipt] | None:
    org_id = _organization_id(scope)
    if org_id is None:
        return None
    return Receipt.objects.filter(organization_id=org_id, sequence__isnull=False)


def _receipt_links(scope: str, after: int) -> Iterator[Link]:
    receipts = _receipt_rows(scope)
    if receipts is None:
        return
    while True:
        rows = list(receipts.filter(sequence__gt=after).order_by("sequence")[:CHUNK])
        yield from (_receipt_link(row) for row in rows)
        if len(rows) < CHUNK:
            return
        after = rows[-1].sequence or after


def links(kind: str, scope: str, *, after: int = 0) -> Iterator[Link]:
    """The chain's rows after sequence ``after``, in order, in chunks (constant memory)."""
    if kind_check(kind) == ChainKind.AUDIT:
        return _audit_links(scope, after)
    return _receipt_links(scope, after)


def link_at(kind: str, scope: str, sequence: int) -> Link | None:
    """The row at ``sequence``, or None when there is none."""
    if kind_check(kind) == ChainKind.AUDIT:
        event = AuditEvent.objects.filter(chain__scope=scope, sequence=sequence).first()
        return _audit_link(event, scope, _audit_org(scope)) if event is not None else None
    receipts = _receipt_rows(scope)
    row = receipts.filter(sequence=sequence).first() if receipts is not None else None
    return _receipt_link(row) if row is not None else None


def _link_reason(link: Link, prev_hash: str, noun: str) -> str:
    if link.prev_hash != prev_hash:
        return (
            f"its prev_hash is not the previous {noun}'s hash "
            f"(a {noun} before it was removed, inserted or reordered)"
        )
    if not link.intact:
        return f"its contents do not match its hash (the {noun} was altered)"
    if link.foreign:
        return f"its organisation is not its chain's (the {noun} was moved)"
    return ""


def noun(kind: str) -> str:
    return "event" if kind == ChainKind.AUDIT else "receipt"


def links_walk(
    kind: str, scope: str, *, after: int, prev_hash: str, upto: int | None = None
) -> tuple[LinkBreak | None, int, str]:
    """Walk the rows after ``after`` (whose hash is ``prev_hash``) up to ``upto`` (all if
    None): the first break, and how far the chain held (sequence and hash)."""
    expected, prev = after + 1, prev_hash
    what = noun(kind)
    for link in links(kind, scope, after=after):
        if upto is not None and link.sequence > upto:
            break
        if link.sequence != expected:
            reason = f"{what}s {expected} to {link.sequence - 1} are missing"
            return LinkBreak(expected, link.row_id, reason), expected - 1, prev
        if reason := _link_reason(link, prev, what):
            return LinkBreak(link.sequence, link.row_id, reason), expected - 1, prev
        expected, prev = expected + 1, link.hash
    return None, expected - 1, prev


def head_reason(head: Head, reached: int, last_hash: str) -> tuple[int, str] | None:
    """Whether the walk's end (``reached``, ``last_hash``) is the head; (sequence, why)."""
    what = noun(head.kind)
    if reached < head.length:
        return (
            reached + 1,
            f"the chain ends at {reached} but its head says {head.length}: "
            f"the newest {what}s were removed",
        )
    if reached > head.length:
        return (
            head.length + 1,
            f"the head says {head.length} but {what}s go on to {reached}: the head was rewound",
        )
    if last_hash != head.last_hash:
        return reached, f"the chain head's hash does not match its last {what}"
    return None


def as_dict(head: Head) -> dict[str, Any]:
    return {
        "kind": head.kind,
        "scope": head.scope,
        "length": head.length,
        "last_hash": head.last_hash,
        "base_sequence": head.base_sequence,
        "base_hash": head.base_hash,
    }
