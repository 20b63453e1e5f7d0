from __future__ import annotations

import ipaddress
import logging
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from compliance.hashing import GLOBAL_SCOPE, event_hash_of
from compliance.models import AuditChain, AuditEvent

if TYPE_CHECKING:
    from accounts.models import Organization, User

logger = logging.getLogger("aqta.audit")


def event_hash(event: AuditEvent) -> str:
    """The hash ``event`` should carry in its chain (``compliance.hashing``)."""
    return event_hash_of(event, event.chain.scope)


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


def _json_clean(value: Any) -> Any:
    """``data`` as PostgreSQL's jsonb stores it: no NUL characters in keys or strings."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_json_clean(str(key)): _json_clean(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_clean(item) for item in value]
    return value


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
    scope = str(organization.pk) if organization is not None else GLOBAL_SCOPE
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
        data=_json_clean(data or {}),
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
    """Sequence number of the first break of the chain ``scope``, or None if intact (0: a
    checkpoint problem that is on no row). The walk, the checkpoints and the reasons are
    ``compliance.verify.audit_chain_report``."""
    from compliance.verify import audit_chain_report  # it reads healthcare's chains too

    report = audit_chain_report(scope=scope)
    if report.valid:
        return None
    return report.sequence or 0
