"""Signed checkpoints of every chain's head, and the breaks they reveal (docs/audit.md).

A checkpoint is a statement, signed with the issuer's Ed25519 key (which the database
never holds), that a chain had ``length`` rows ending in ``last_hash`` at ``signed_at``::

    {"v": 1, "type": "aqta.chain_checkpoint", "kind": "audit" | "receipts", "scope": …,
     "length": …, "last_hash": …, "base_sequence": …, "base_hash": …, "base_at": …,
     "signed_at": …, "public_key": …, "signature": …}

signed over its RFC 8785 bytes without ``signature``. Each run (Celery beat, or
``manage.py audit_checkpoint``) signs the chains that moved, but only once it has checked
that the chain still extends the previous checkpoint (the row at its length still has its
hash, and every row since links): a chain rewritten since is not signed again, its old
checkpoint is carried forward and the break reported. So the newest checkpoint of a chain
vouches for all the earlier ones, and verifying against it is enough.

Checkpoints are written to the file store first (``compliance.checkpoint_store``), which
verification trusts, then copied to ``ChainCheckpoint`` for the API. A chain shorter than
its checkpoint (a truncated tail), a checkpointed chain without a head (deleted), a row at
a checkpointed sequence with another hash (re-hashed), or a checkpoint whose signature
does not verify, is a break (:func:`checkpoint_breaks`).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from compliance import chains
from compliance.chains import Head
from compliance.checkpoint_docs import (
    Checkpoint,
    checkpoint_parse,
    checkpoint_sign,
    signature_reason,
)
from compliance.checkpoint_store import StoreError, file_time, is_full, store_files, store_lines
from compliance.checkpoint_store import store_write as _store_write
from compliance.models import ChainCheckpoint
from healthcare import keyring
from healthcare.signing import issuer_key

logger = logging.getLogger("aqta.audit")

Key = tuple[str, str]  # (kind, scope)


@dataclass(frozen=True)
class CheckpointBreak:
    """Where a chain disagrees with its signed checkpoint, or a checkpoint with itself."""

    kind: str
    scope: str
    sequence: int | None
    reason: str
    signed_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "scope": self.scope,
            "sequence": self.sequence,
            "reason": self.reason,
            "checkpoint_signed_at": self.signed_at.isoformat() if self.signed_at else None,
        }


@dataclass
class Latest:
    """The newest stored checkpoint of every chain, and the lines that could not be read."""

    entries: dict[Key, Checkpoint] = field(default_factory=dict)
    problems: list[CheckpointBreak] = field(default_factory=list)
    newest_full: datetime | None = None


_latest_cache: dict[tuple[str, ...], Latest] = {}


def _store_read(files: list[Any]) -> Latest:
    latest = Latest()
    for path in files:
        for line in store_lines(path):
            where = f"{line.file}, line {line.line}"
            if line.problem:
                reason = f"checkpoint file {where}: {line.problem}"
                latest.problems.append(CheckpointBreak("", "", None, reason))
                continue
            checkpoint, problem = checkpoint_parse(line.text, source=where)
            if checkpoint is None:
                reason = f"checkpoint file {where} is not a checkpoint: {problem}"
                latest.problems.append(CheckpointBreak("", "", None, reason))
                continue
            latest.entries.setdefault((checkpoint.kind, checkpoint.scope), checkpoint)
        if is_full(path):
            latest.newest_full = file_time(path)
    return latest


def store_latest() -> Latest:
    """The newest checkpoint per chain in the file store: the newest full file and the
    delta files after it. Files never change, so the answer is kept per set of files."""
    files = []
    for path in store_files():
        files.append(path)
        if is_full(path):
            break
    names = tuple(str(path) for path in files)
    if names not in _latest_cache:
        _latest_cache.clear()
        _latest_cache[names] = _store_read(files)
    return _latest_cache[names]


# --- comparing a chain with a checkpoint --------------------------------------------------


def _when(checkpoint: Checkpoint) -> str:
    return f"the checkpoint of {checkpoint.signed_at:%Y-%m-%d %H:%M:%S} UTC"


def _base_reason(checkpoint: Checkpoint, head: Head) -> tuple[int, str]:
    """Whether the chain's base agrees with the checkpoint's. A retention purge signs its
    new base before it deletes, so the newest checkpoint always has the newest base."""
    what, when = chains.noun(checkpoint.kind), _when(checkpoint)
    if head.base_sequence > checkpoint.base_sequence:
        return checkpoint.base_sequence + 1, (
            f"{what}s {checkpoint.base_sequence + 1} to {head.base_sequence} were removed "
            f"without a signed purge (the chain's base moved past {when})"
        )
    if head.base_sequence < checkpoint.base_sequence:
        # A purge signed but not carried out leaves its rows in place: nothing is lost.
        link = chains.link_at(checkpoint.kind, checkpoint.scope, checkpoint.base_sequence)
        if link is None or link.hash != checkpoint.base_hash:
            return head.base_sequence, f"the chain's base moved back from {when}"
        return 0, ""
    if head.base_hash != checkpoint.base_hash:
        return head.base_sequence, f"the chain's base does not have the hash {when} signed"
    return 0, ""


def _head_reason(checkpoint: Checkpoint, head: Head | None, now: datetime) -> tuple[int, str]:
    """(sequence, why) the chain in the database contradicts ``checkpoint``; (0, "") if not."""
    what, when = chains.noun(checkpoint.kind), _when(checkpoint)
    if head is None:
        return checkpoint.length, (
            f"the chain is gone: {when} signed {checkpoint.length} {what}s, "
            "and the database has no such chain (deleted)"
        )
    if head.length < checkpoint.length:
        return head.length + 1, (
            f"the chain has {head.length} {what}s but {when} signed {checkpoint.length}: "
            f"the newest {what}s were removed"
        )
    sequence, reason = _base_reason(checkpoint, head)
    if reason or checkpoint.length <= max(head.base_sequence, checkpoint.base_sequence):
        return sequence, reason
    link = chains.link_at(checkpoint.kind, checkpoint.scope, checkpoint.length)
    if link is None:
        return checkpoint.length, f"{what} {checkpoint.length}, signed in {when}, is missing"
    if link.hash != checkpoint.last_hash:
        return checkpoint.length, (
            f"{what} {checkpoint.length} does not have the hash {when} signed: the chain "
            f"was rewritten up to it (its {what}s edited and hashed again)"
        )
    return 0, ""


def _break(checkpoint: Checkpoint, sequence: int | None, reason: str) -> CheckpointBreak:
    return CheckpointBreak(
        checkpoint.kind, checkpoint.scope, sequence, reason, checkpoint.signed_at
    )


def _checked(checkpoint: Checkpoint, head: Head | None, now: datetime) -> CheckpointBreak | None:
    if reason := signature_reason(checkpoint):
        return _break(checkpoint, None, f"{_when(checkpoint)} ({checkpoint.source}): {reason}")
    sequence, reason = _head_reason(checkpoint, head, now)
    return _break(checkpoint, sequence, reason) if reason else None


def _database_latest(kind: str, scope: str) -> Checkpoint | None:
    row = ChainCheckpoint.objects.filter(kind=kind, scope=scope).order_by("-signed_at", "-id")
    latest = row.only("document").first()
    if latest is None:
        return None
    checkpoint, _ = checkpoint_parse(latest.document, source="the database")
    return checkpoint


def _copies_break(
    kind: str, scope: str, stored: Checkpoint | None, copied: Checkpoint | None
) -> CheckpointBreak | None:
    """Whether the database's copy and the file store agree on the newest checkpoint."""
    if stored is not None and (copied is None or copied.signed_at < stored.signed_at):
        reason = f"the database's copy of {_when(stored)} is missing (removed from the database)"
        return CheckpointBreak(kind, scope, None, reason, stored.signed_at)
    if copied is not None and (stored is None or stored.signed_at < copied.signed_at):
        reason = f"{_when(copied)} is in the database but not in the checkpoint file store"
        return CheckpointBreak(kind, scope, None, reason, copied.signed_at)
    return None


def checkpoint_breaks(
    kind: str, scope: str, *, now: datetime | None = None
) -> list[CheckpointBreak]:
    """Everything the signed checkpoints say is wrong with one chain (empty: nothing).

    ``kind`` is ``"audit"`` (scope: an organisation id or ``global``) or ``"receipts"``
    (scope: the organisation id). Never raises on a damaged checkpoint or store."""
    chains.kind_check(kind)
    now = now or timezone.now()
    latest = store_latest()
    stored = latest.entries.get((kind, scope))
    copied = _database_latest(kind, scope)
    found = list(latest.problems)
    if mismatch := _copies_break(kind, scope, stored, copied):
        found.append(mismatch)
    head = chains.head_get(kind, scope)
    checked: set[str] = set()
    for checkpoint in (stored, copied):
        if checkpoint is None or checkpoint.document in checked:
            continue
        checked.add(checkpoint.document)
        if problem := _checked(checkpoint, head, now):
            found.append(problem)
    return found


def checkpointed_scopes(kind: str) -> set[str]:
    """Every scope of ``kind`` a checkpoint names (in the store or the database)."""
    scopes = {scope for (k, scope) in store_latest().entries if k == kind}
    rows = ChainCheckpoint.objects.filter(kind=kind).values_list("scope", flat=True)
    return scopes | set(rows.distinct())


def checkpoint_latest(kind: str, scope: str) -> ChainCheckpoint | None:
    """The newest checkpoint of a chain as the database keeps it (what the API serves)."""
    return (
        ChainCheckpoint.objects.filter(kind=kind, scope=scope).order_by("-signed_at", "-id").first()
    )


# --- a checkpoint run ----------------------------------------------------------------------


@dataclass
class Run:
    """What one checkpoint run did."""

    file: str | None = None
    full: bool = False
    signed: int = 0
    carried: int = 0
    breaks: list[CheckpointBreak] = field(default_factory=list)
    documents: list[str] = field(default_factory=list)
    rows: list[ChainCheckpoint] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "full": self.full,
            "signed": self.signed,
            "carried": self.carried,
            "breaks": [b.as_dict() for b in self.breaks],
        }


def _unchanged(head: Head, previous: Checkpoint) -> bool:
    return (head.length, head.last_hash, head.base_sequence, head.base_hash) == (
        previous.length,
        previous.last_hash,
        previous.base_sequence,
        previous.base_hash,
    )


def _extends(head: Head, previous: Checkpoint | None, now: datetime) -> CheckpointBreak | None:
    """Whether ``head`` extends ``previous`` (or, without one, is a sound chain): the
    previous checkpoint still holds and every row after it links up to the head."""
    after, prev_hash = head.base_sequence, head.base_hash
    if previous is not None:
        if problem := _checked(previous, head, now):
            return problem
        if previous.length > after:
            after, prev_hash = previous.length, previous.last_hash
    found, reached, last = chains.links_walk(
        head.kind, head.scope, after=after, prev_hash=prev_hash, upto=head.length
    )
    if found is not None:
        return CheckpointBreak(head.kind, head.scope, found.sequence, found.reason)
    if at_head := chains.head_reason(head, reached, last):
        return CheckpointBreak(head.kind, head.scope, at_head[0], at_head[1])
    return None


def _signed(head: Head, base_at: datetime | None, now: datetime) -> ChainCheckpoint:
    """``head`` signed: the checkpoint as the database keeps it (``file`` still to set)."""
    checkpoint = checkpoint_sign(head, base_at=base_at, now=now, key=issuer_key())
    return ChainCheckpoint(
        kind=head.kind,
        scope=head.scope,
        length=head.length,
        last_hash=head.last_hash,
        base_sequence=head.base_sequence,
        base_hash=head.base_hash,
        signed_at=checkpoint.signed_at,
        key_id=checkpoint.key_id,
        document=checkpoint.document,
    )


def _base_at(head: Head, previous: Checkpoint | None) -> datetime | None:
    """When the row at the chain's base was recorded (signed by the purge that moved it)."""
    if head.base_sequence == 0:
        return None
    if previous is not None and previous.base_sequence == head.base_sequence:
        return previous.base_at
    link = chains.link_at(head.kind, head.scope, head.base_sequence)
    return link.at if link is not None else None


def _sign(run: Run, head: Head, previous: Checkpoint | None, now: datetime) -> None:
    row = _signed(head, _base_at(head, previous), now)
    run.documents.append(row.document)
    run.rows.append(row)
    run.signed += 1


def _carry(run: Run, previous: Checkpoint | None) -> None:
    """Keep the previous checkpoint as the chain's newest (a full file lists every chain)."""
    if previous is not None and run.full:
        run.documents.append(previous.document)
        run.carried += 1


def _run_chain(run: Run, head: Head, previous: Checkpoint | None, now: datetime) -> None:
    if previous is not None and _unchanged(head, previous):
        _carry(run, previous)
        return
    if problem := _extends(head, previous, now):
        run.breaks.append(problem)
        _carry(run, previous)
        return
    _sign(run, head, previous, now)


def _full_due(latest: Latest, now: datetime) -> bool:
    every = timedelta(seconds=settings.AQTA_CHECKPOINT_FULL_SECONDS)
    return latest.newest_full is None or now - latest.newest_full >= every


def checkpoint_run(*, now: datetime | None = None) -> Run:
    """Sign the head of every chain that moved since its last checkpoint (see the module
    doc); write them to the file store, then to the database. Raises ``StoreError`` when
    the store cannot be written (nothing is then recorded)."""
    now = now or timezone.now()
    keyring.register(issuer_key())  # so that verification knows the key it signs with
    latest = store_latest()
    run = Run(full=_full_due(latest, now))
    run.breaks.extend(latest.problems)
    seen: set[Key] = set()
    for head in chains.heads_all():
        seen.add((head.kind, head.scope))
        _run_chain(run, head, latest.entries.get((head.kind, head.scope)), now)
    for key, previous in latest.entries.items():
        if key not in seen:  # a checkpointed chain that has no head any more
            if problem := _checked(previous, None, now):
                run.breaks.append(problem)
            _carry(run, previous)
    if run.signed or (run.full and run.documents):
        run.file = _store_write(run.documents, full=run.full, now=now)
        for row in run.rows:
            row.file = run.file
        with transaction.atomic():
            ChainCheckpoint.objects.bulk_create(run.rows)
    for problem in run.breaks:
        logger.error("checkpoint: %s %s: %s", problem.kind, problem.scope, problem.reason)
    return run


# --- the retention purge's checkpoint -------------------------------------------------------


class PurgeRefused(Exception):
    """The chain does not extend its newest checkpoint: nothing of it may be purged."""


def checkpoint_purge_sign(
    kind: str, scope: str, *, through: int, through_hash: str, through_at: datetime
) -> None:
    """Before a retention purge deletes a chain's rows up to ``through``: check that the
    chain still extends its newest checkpoint, then sign its head with the base the purge
    will leave (``through``, its hash, when it was recorded), to the store and the
    database. Raises ``PurgeRefused`` or ``StoreError``; the purge then deletes nothing."""
    now = timezone.now()
    head = chains.head_get(kind, scope)
    if head is None:
        raise PurgeRefused(f"the {kind} chain {scope} has no head")
    previous = store_latest().entries.get((kind, scope))
    if problem := _extends(head, previous, now):
        raise PurgeRefused(f"at {problem.sequence}: {problem.reason}")
    purged = dataclasses.replace(head, base_sequence=through, base_hash=through_hash)
    row = _signed(purged, through_at, now)
    row.file = _store_write([row.document], full=False, now=now)
    row.save()


__all__ = [
    "CheckpointBreak",
    "PurgeRefused",
    "Run",
    "StoreError",
    "checkpoint_breaks",
    "checkpoint_latest",
    "checkpoint_purge_sign",
    "checkpoint_run",
    "checkpointed_scopes",
    "store_latest",
]
