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
from typing import Any

from compliance.models import AuditEvent

ZERO_HASH = "0" * 64
GLOBAL_SCOPE = "global"


def event_payload(event: AuditEvent, scope: str) -> dict[str, Any]:
    return {
        "scope": scope,
        "sequence": event.sequence,
        "organization": None if scope == GLOBAL_SCOPE else scope,
        "actor": event.actor_label,
        "action": event.action,
        "target": event.target,
        "ip": event.ip,
        "data": event.data,
        "created_at": event.created_at.isoformat(),
    }


def event_canonical(event: AuditEvent, scope: str) -> bytes:
    payload = event_payload(event, scope)
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()


def event_hash_of(event: AuditEvent, scope: str) -> str:
    """The hash ``event`` should carry as a member of the chain ``scope``."""
    return hashlib.sha256(event.prev_hash.encode() + event_canonical(event, scope)).hexdigest()
