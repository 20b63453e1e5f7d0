from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from aqta.admin import ReadOnlyAdmin
from compliance.models import AuditChain, AuditEvent


class AppendOnlyAdmin(ReadOnlyAdmin):
    """The audit trail is append-only: no one edits or deletes it from the admin."""

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(AppendOnlyAdmin):
    list_display = ["created_at", "action", "actor_label", "organization", "target", "ip"]
    list_filter = ["action"]
    search_fields = ["actor_label", "target", "organization__name", "hash"]
    list_select_related = ["organization"]
    date_hierarchy = "created_at"


@admin.register(AuditChain)
class AuditChainAdmin(AppendOnlyAdmin):
    list_display = ["scope", "length", "last_hash"]
    search_fields = ["scope"]
