"""Recording what callers do with the data: exports, reports, verifications, and every
change an operator makes in the Django admin (docs/audit.md, "What is recorded").

These functions take the request they happened in, so the event names its actor (the person,
or the API key as ``api_key:sk-aqta-…abcd``), address and user agent, like every other
audit event. Parameters are recorded as given, cut to a sane size: a hostile query string
must not become a huge audit row.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.db.models import Model
from django.http import HttpRequest
from rest_framework.request import Request

from accounts.authentication import KeyPrincipal
from accounts.models import Organization, User
from compliance.models import AuditEvent
from compliance.services import audit_event_record

MAX_PARAMS = 20
MAX_VALUE = 200
# Objects named in one admin deletion event; a larger deletion names the first ones.
MAX_OBJECTS = 100


def request_actor(request: HttpRequest | Request | None) -> tuple[User | None, str]:
    """Who made ``request``: (the user, their email) or (None, the API key's label)."""
    principal: object = getattr(request, "user", None)
    if isinstance(principal, User):
        return principal, principal.email
    if isinstance(principal, KeyPrincipal):
        return None, principal.label
    return None, ""


def _params(params: Mapping[str, Any]) -> dict[str, str]:
    kept = list(params.items())[:MAX_PARAMS]
    return {str(name)[:MAX_VALUE]: str(value)[:MAX_VALUE] for name, value in kept}


def _record(
    request: HttpRequest | Request | None,
    action: str,
    *,
    organization: Organization | None,
    target: str,
    data: dict[str, Any],
) -> AuditEvent:
    actor, label = request_actor(request)
    return audit_event_record(
        action=action,
        organization=organization,
        actor=actor,
        actor_label=label,
        target=target,
        request=request,  # a DRF Request proxies META and headers to its HttpRequest
        data=data,
    )


def audit_export_record(
    request: HttpRequest | Request | None,
    kind: str,
    params: Mapping[str, Any],
    *,
    organization: Organization | None,
    rows: int | None = None,
) -> AuditEvent:
    """An export of ``kind`` (``analytics.requests``, ``audit.trail``, ``receipts``…) with
    the filters and format it was asked for: ``data.exported``."""
    data: dict[str, Any] = {"kind": kind, "params": _params(params)}
    if rows is not None:
        data["rows"] = rows
    return _record(request, "data.exported", organization=organization, target=kind, data=data)


def audit_report_record(
    request: HttpRequest | Request | None,
    kind: str,
    params: Mapping[str, Any],
    *,
    organization: Organization | None,
) -> AuditEvent:
    """A compliance report of ``kind`` produced for someone: ``report.generated``."""
    data = {"kind": kind, "params": _params(params)}
    return _record(request, "report.generated", organization=organization, target=kind, data=data)


def audit_verification_record(
    request: HttpRequest | Request | None,
    kind: str,
    target: str,
    *,
    valid: bool,
    reason: str = "",
    organization: Organization | None,
) -> AuditEvent:
    """A verification someone asked for: ``receipt.verified`` (a stored or a submitted
    receipt), ``audit_chain.verified``, ``receipt_chain.verified``."""
    data = {"valid": valid, "reason": reason[: MAX_VALUE * 5]}
    return _record(request, f"{kind}.verified", organization=organization, target=target, data=data)


# --- the Django admin ----------------------------------------------------------------------


def _organization_of(obj: Model) -> Organization | None:
    """The organisation an object belongs to, whose chain records changes to it."""
    if isinstance(obj, Organization):
        return obj
    owner = getattr(obj, "organization", None)
    return owner if isinstance(owner, Organization) else None


def _label(obj: Model) -> str:
    return f"{obj._meta.label_lower}:{obj.pk}"


def admin_change_record(
    request: HttpRequest, obj: Model, what: str, message: str | list[Any]
) -> AuditEvent:
    """An object added or changed in the admin: ``admin.added`` / ``admin.changed``, with
    Django's change message (which fields, which inline objects)."""
    data = {"model": obj._meta.label_lower, "object": str(obj)[:MAX_VALUE], "changes": message}
    return _record(
        request, f"admin.{what}", organization=_organization_of(obj), target=_label(obj), data=data
    )


def admin_deletions_record(request: HttpRequest, objects: Iterable[Model]) -> list[AuditEvent]:
    """Objects about to be deleted in the admin: one ``admin.deleted`` per organisation
    (and one for objects of none), naming up to ``MAX_OBJECTS`` of them."""
    groups: dict[Any, list[Model]] = {}
    for obj in objects:
        organization = _organization_of(obj)
        groups.setdefault(organization.pk if organization else None, []).append(obj)
    events = []
    for members in groups.values():
        model = members[0]._meta.label_lower
        data = {
            "model": model,
            "count": len(members),
            "objects": [[str(o.pk), str(o)[:MAX_VALUE]] for o in members[:MAX_OBJECTS]],
        }
        target = _label(members[0]) if len(members) == 1 else model
        events.append(
            _record(
                request,
                "admin.deleted",
                organization=_organization_of(members[0]),
                target=target,
                data=data,
            )
        )
    return events
