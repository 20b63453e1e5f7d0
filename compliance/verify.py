"""Verifying a chain: its rows, its head, and its signed checkpoints (docs/audit.md).

:func:`audit_chain_report` walks an audit chain from its base (where a retention purge
left it) to its head: sequence continuity, each ``prev_hash`` link, each recomputed hash,
that each event belongs to the chain's organisation, that the walk ends at the head; then
compares the chain with its newest signed checkpoint. :func:`receipts_chain_report` does
the same for an organisation's receipt chain, with ``healthcare.chain.chain_verify`` for
the walk. Both answer with a :class:`ChainReport`: valid, or the first break (sequence,
the row's id, a reason), and every break found.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from compliance import chains
from compliance.checkpoints import CheckpointBreak, checkpoint_breaks, checkpoint_latest
from compliance.models import ChainKind
from healthcare.chain import chain_verify


@dataclass(frozen=True)
class Break:
    sequence: int | None
    row_id: int | None
    reason: str

    def as_dict(self, kind: str) -> dict[str, Any]:
        key = "event_id" if kind == ChainKind.AUDIT else "receipt_id"
        return {"sequence": self.sequence, key: self.row_id, "reason": self.reason}


@dataclass
class ChainReport:
    kind: str
    scope: str
    length: int
    checked: int
    breaks: list[Break] = field(default_factory=list)
    checkpoint: dict[str, Any] | None = None

    @property
    def valid(self) -> bool:
        return not self.breaks

    @property
    def first_break(self) -> Break | None:
        return self.breaks[0] if self.breaks else None

    @property
    def sequence(self) -> int | None:
        """Where the first break is (None when the chain is intact)."""
        return self.breaks[0].sequence if self.breaks else None

    def as_dict(self) -> dict[str, Any]:
        first = self.first_break
        return {
            "kind": self.kind,
            "scope": self.scope,
            "valid": self.valid,
            "length": self.length,
            "checked": self.checked,
            "first_break": first.as_dict(self.kind) if first else None,
            "breaks": [b.as_dict(self.kind) for b in self.breaks],
            "checkpoint": self.checkpoint,
        }


def _checkpoint_summary(kind: str, scope: str) -> dict[str, Any] | None:
    latest = checkpoint_latest(kind, scope)
    if latest is None:
        return None
    return {
        "length": latest.length,
        "last_hash": latest.last_hash,
        "signed_at": latest.signed_at.isoformat(),
        "key_id": latest.key_id,
        "document": latest.document,
    }


def _from_checkpoints(kind: str, found: list[CheckpointBreak]) -> list[Break]:
    """Checkpoint breaks as breaks, located on the row where one is (earliest first)."""
    located = []
    for problem in found:
        link = None
        if problem.sequence and problem.scope:
            link = chains.link_at(kind, problem.scope, problem.sequence)
        located.append(Break(problem.sequence, link.row_id if link else None, problem.reason))
    return sorted(located, key=lambda b: (b.sequence is None, b.sequence or 0))


def audit_chain_report(*, scope: str, now: datetime | None = None) -> ChainReport:
    """Walk the audit chain ``scope`` and compare it with its checkpoints."""
    kind = ChainKind.AUDIT
    head = chains.head_get(kind, scope)
    report = ChainReport(kind, scope, head.length if head else 0, 0)
    if head is not None:
        found, reached, last = chains.links_walk(
            kind, scope, after=head.base_sequence, prev_hash=head.base_hash
        )
        report.checked = reached - head.base_sequence
        if found is not None:
            report.breaks.append(Break(found.sequence, found.row_id, found.reason))
        elif problem := chains.head_reason(head, reached, last):
            link = chains.link_at(kind, scope, problem[0])
            report.breaks.append(Break(problem[0], link.row_id if link else None, problem[1]))
    report.breaks.extend(_from_checkpoints(kind, checkpoint_breaks(kind, scope, now=now)))
    report.checkpoint = _checkpoint_summary(kind, scope)
    return report


def receipts_chain_report(org_id: Any, *, now: datetime | None = None) -> ChainReport:
    """An organisation's receipt chain: ``healthcare.chain.chain_verify`` (signatures,
    columns, links) and its checkpoints."""
    kind, scope = ChainKind.RECEIPTS, str(org_id)
    verdict = chain_verify(org_id)
    report = ChainReport(kind, scope, verdict.length, verdict.checked)
    if not verdict.valid:
        report.breaks.append(Break(verdict.sequence, verdict.receipt_id, verdict.reason))
    report.breaks.extend(_from_checkpoints(kind, checkpoint_breaks(kind, scope, now=now)))
    report.checkpoint = _checkpoint_summary(kind, scope)
    return report
