"""How long the compliance records are kept: audit events and receipts (docs/audit.md).

Audit events (and an organisation's receipts) are kept for ``AQTA_AUDIT_RETENTION_DAYS``
(default 2,557 days: 7 years, the Healthcare tier's longest retention), and never for
less than the organisation's tier allows for its traces (``Tier.max_retention_days``);
``0`` keeps them forever. The purge itself is ``compliance.audit_purge``.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.conf import settings

from accounts.models import Organization
from compliance.hashing import GLOBAL_SCOPE


def scope_organization(scope: str) -> Organization | None:
    """The organisation a chain belongs to (None: the global chain, or deleted)."""
    try:
        org_id = uuid.UUID(scope)
    except ValueError:
        return None
    return Organization.objects.select_related("tier").filter(pk=org_id).first()


def audit_retention_days(*, scope: str) -> int | None:
    """How many days the chain ``scope`` keeps its events; None: forever."""
    days: int = settings.AQTA_AUDIT_RETENTION_DAYS
    if days <= 0:
        return None
    organization = scope_organization(scope) if scope != GLOBAL_SCOPE else None
    if organization is not None:
        days = max(days, organization.tier.max_retention_days)
    return days


def audit_retention_cutoff(*, kind: str, scope: str, now: datetime) -> datetime | None:
    """Records of the chain created before this moment are past their retention (the
    same for an organisation's audit events and its receipts); None: kept forever."""
    days = audit_retention_days(scope=scope)
    return now - timedelta(days=days) if days is not None else None
