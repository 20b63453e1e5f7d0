"""Every change an operator makes in the Django admin goes to the audit trail.

The project's admin site (``AuditedAdminSite``, installed by ``compliance.apps.
AuditedAdminConfig`` in place of ``django.contrib.admin``) registers every model admin,
this project's and third parties' alike, as a subclass with :class:`AuditedAdminMixin`:
whatever Django writes to its own ``LogEntry`` (an object added, changed with the fields
and inline objects, deleted, also through the "delete selected" action) is recorded as
``admin.added`` / ``admin.changed`` / ``admin.deleted`` with the operator, their address
and the object, in the chain of the organisation the object belongs to (else the global
one). Admin actions that go through a service (revoking keys, moving tiers) are audited
by that service.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib import admin
from django.db.models import Model
from django.http import HttpRequest

from compliance.records import admin_change_record, admin_deletions_record


class AuditedAdminMixin:
    """Records what Django logs in ``LogEntry``, where the request is still at hand."""

    def log_addition(self, request: HttpRequest, obj: Model, message: Any) -> Any:
        entry = super().log_addition(request, obj, message)  # type: ignore[misc]
        admin_change_record(request, obj, "added", message)
        return entry

    def log_change(self, request: HttpRequest, obj: Model, message: Any) -> Any:
        entry = super().log_change(request, obj, message)  # type: ignore[misc]
        admin_change_record(request, obj, "changed", message)
        return entry

    def log_deletions(self, request: HttpRequest, queryset: Iterable[Model]) -> Any:
        objects = list(queryset)
        entries = super().log_deletions(request, objects)  # type: ignore[misc]
        admin_deletions_record(request, objects)
        return entries


class AuditedAdminSite(admin.AdminSite):
    def register(
        self,
        model_or_iterable: Any,
        admin_class: type[admin.ModelAdmin[Any]] | None = None,
        **options: Any,
    ) -> None:
        base = admin_class or admin.ModelAdmin
        if not issubclass(base, AuditedAdminMixin):
            attrs = {"__module__": base.__module__, "__qualname__": base.__qualname__}
            base = type(base.__name__, (AuditedAdminMixin, base), attrs)
        super().register(model_or_iterable, base, **options)
