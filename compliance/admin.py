from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from aqta.admin import ReadOnlyAdmin
from compliance.models import AuditChain, AuditEvent, ChainCheckpoint


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
    list_display = ["scope", "length", "last_hash", "base_sequence"]
    search_fields = ["scope"]


@admin.register(ChainCheckpoint)
class ChainCheckpointAdmin(AppendOnlyAdmin):
    """The database's copies of the signed checkpoints (the file store has the originals)."""

    list_display = ["signed_at", "kind", "scope", "length", "base_sequence", "key_id", "file"]
    list_filter = ["kind"]
    search_fields = ["scope", "last_hash", "file"]
    date_hierarchy = "signed_at"
