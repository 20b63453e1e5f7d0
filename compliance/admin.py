from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from aqta.admin import ReadOnlyAdmin
from compliance.models import (
    AuditChain,
    AuditEvent,
    BiasRun,
    ChainCheckpoint,
    ComplianceReport,
    ProbeCall,
    ProbeSet,
)


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


class ProbeCallInline(admin.TabularInline):
    model = ProbeCall
    fields = readonly_fields = (
        "index", "case_id", "attribute", "group", "repetition", "status", "sends",
        "http_status", "error_code", "cost_eur", "trace_id",
    )  # fmt: skip
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = False


@admin.register(BiasRun)
class BiasRunAdmin(ReadOnlyAdmin):
    """Bias detection runs, for operators (organisations start them in the dashboard or
    the API); read-only: a run's record is evidence."""

    list_display = ["created_at", "organization", "method", "model", "status", "progress",
                    "calls_done", "calls_total", "spent_eur"]  # fmt: skip
    list_filter = ["method", "status"]
    search_fields = ["organization__name", "model", "probe_set_name"]
    list_select_related = ["organization"]
    date_hierarchy = "created_at"
    exclude = ["key_secret_encrypted"]
    inlines = [ProbeCallInline]


@admin.register(ProbeSet)
class ProbeSetAdmin(ReadOnlyAdmin):
    list_display = ["name", "organization", "created_at"]
    search_fields = ["name", "organization__name"]
    list_select_related = ["organization"]


@admin.register(ComplianceReport)
class ComplianceReportAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "organization", "period_start", "period_end", "format",
                    "status", "content_sha256"]  # fmt: skip
    list_filter = ["format", "status"]
    search_fields = ["organization__name", "content_sha256", "pdf_sha256"]
    list_select_related = ["organization"]
    date_hierarchy = "created_at"
    exclude = ["pdf", "document"]
