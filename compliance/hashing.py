"""The audit event hash: public, unkeyed, unchanged since the first event (docs/audit.md).

``hash = SHA-256(prev_hash as ASCII hex || canonical JSON of the event)``, where the
canonical JSON is ``json.dumps(payload, sort_keys=True, separators=(",", ":"),
default=str)`` of the payload below. Anyone can recompute it from an export. That it is
unkeyed is deliberate: what stops someone with write access to the database from
rewriting a chain and hashing it again is the signed checkpoints
(``compliance.checkpoints``), signed with a key the database never holds.

``organization`` is the chain's organisation (its scope; ``None`` for the global chain),
as it always was for every event recorded: the row's ``organization_id`` may later be
set to NULL when the organisation is deleted, which must not break the chain.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from compliance.models import AuditEvent

ZERO_HASH = "0" * 64
GLOBAL_SCOPE = "global"


# The columns the hash covers, besides the chain's scope (in ``chained_hash``'s order).
HASHED = ("sequence", "actor_label", "action", "target", "ip", "data", "created_at", "prev_hash")


def chained_hash(
    scope: str,
    sequence: int,
    actor_label: str,
    action: str,
    target: str,
    ip: str | None,
    data: Any,
    created_at: datetime,
    prev_hash: str,
) -> str:
    """The hash an event with these values carries in the chain ``scope``."""
    payload = {
        "scope": scope,
        "sequence": sequence,
        "organization": None if scope == GLOBAL_SCOPE else scope,
        "actor": actor_label,
        "action": action,
        "target": target,
        "ip": ip,
        "data": data,
        "created_at": created_at.isoformat(),
    }
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(prev_hash.encode() + canonical.encode()).hexdigest()


def event_hash_of(event: AuditEvent, scope: str) -> str:
    """The hash ``event`` should carry as a member of the chain ``scope``."""
    return chained_hash(scope, *(getattr(event, name) for name in HASHED))
