from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from compliance.models import AuditChain, AuditEvent

if TYPE_CHECKING:
    from accounts.models import Organization, User

logger = logging.getLogger("aqta.audit")


def _canonical(event: AuditEvent) -> bytes:
    payload = {
        "scope": event.chain.scope,
        "sequence": event.sequence,
        "organization": str(event.organization_id) if event.organization_id else None,
        "actor": event.actor_label,
        "action": event.action,
        "target": event.target,
        "ip": event.ip,
        "data": event.data,
        "created_at": event.created_at.isoformat(),
    }
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()


def event_hash(event: AuditEvent) -> str:
    return hashlib.sha256(event.prev_hash.encode() + _canonical(event)).hexdigest()


def _client_ip(request: HttpRequest) -> str | None:
    """The client's address, or None when the server handed over something else (the
    column takes addresses only: PostgreSQL's inet refuses the rest)."""
    try:
        return str(ipaddress.ip_address(request.META.get("REMOTE_ADDR") or ""))
    except ValueError:
        return None


def _text(value: str, limit: int) -> str:
    """Text as the database stores it: PostgreSQL refuses NUL characters in text."""
    return value.replace("\x00", "\ufffd")[:limit]


@transaction.atomic
def audit_event_record(
    *,
    action: str,
    organization: Organization | None = None,
    actor: User | None = None,
    actor_label: str = "",
    target: str = "",
    request: HttpRequest | None = None,
    data: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append an event to its organisation's chain (or the global one) and log it."""
    scope = str(organization.pk) if organization is not None else "global"
    AuditChain.objects.get_or_create(scope=scope)
    chain = AuditChain.objects.select_for_update().get(scope=scope)
    event = AuditEvent(
        chain=chain,
        sequence=chain.length + 1,
        organization=organization,
        actor=actor if getattr(actor, "pk", None) else None,
        actor_label=_text(actor_label or (getattr(actor, "email", "") if actor else ""), 254),
        action=action,
        target=_text(target, 200),
        ip=_client_ip(request) if request is not None else None,
        user_agent=_text(request.headers.get("User-Agent", ""), 300) if request is not None else "",
        data=data or {},
        created_at=timezone.now(),
        prev_hash=chain.last_hash,
    )
    event.hash = event_hash(event)
    event.save()
    chain.last_hash = event.hash
    chain.length = event.sequence
    chain.save(update_fields=["last_hash", "length"])
    logger.info(
        "audit %s",
        action,
        extra={"audit_action": action, "actor": event.actor_label, "target": target},
    )
    return event


def audit_chain_verify(*, scope: str) -> int | None:
    """Sequence number of the first event that breaks the chain, or None if intact."""
    prev = "0" * 64
    events = AuditEvent.objects.filter(chain__scope=scope).select_related("chain")
    for event in events.order_by("sequence").iterator():
        if event.prev_hash != prev or event_hash(event) != event.hash:
            return event.sequence
        prev = event.hash
    return None
