from __future__ import annotations

from django.urls import path

from accounts import views
from compliance import views as compliance_views
from healthcare import views as receipts

app_name = "dashboard"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("organization/switch/", views.organization_switch, name="organization-switch"),
    path("usage/", views.usage, name="usage"),
    path("keys/", views.keys, name="keys"),
    path("keys/<uuid:key_id>/revoke/", views.key_revoke, name="key-revoke"),
    path("traces/", views.traces, name="traces"),
    path("traces/<str:trace_id>/", views.trace_detail, name="trace-detail"),
    path("receipts/", receipts.receipts, name="receipts"),
    path("receipts/<str:reference>/", receipts.receipt_detail, name="receipt-detail"),
    path(
        "receipts/<str:reference>/receipt.json",
        receipts.receipt_download,
        name="receipt-download",
    ),
    path("settings/", views.organization_settings, name="settings"),
    path("members/", views.members, name="members"),
    path("members/<int:membership_id>/role/", views.member_role, name="member-role"),
    path("members/<int:membership_id>/remove/", views.member_remove, name="member-remove"),
    path("audit/", compliance_views.audit, name="audit"),
    path("bias/", compliance_views.bias, name="bias"),
    path("bias/<uuid:run_id>/", compliance_views.bias_run_detail, name="bias-run"),
    path("reports/", compliance_views.reports, name="reports"),
    path(
        "reports/<str:reference>/download/",
        compliance_views.report_download,
        name="report-download",
    ),
]
