from __future__ import annotations

from django.urls import path

from compliance import api
from compliance.bias import api as bias_api
from compliance.reports import api as reports_api

app_name = "compliance"

urlpatterns = [
    path("audit-trail", api.AuditTrailApi.as_view(), name="audit-trail"),
    path("bias-detection", bias_api.BiasRunListApi.as_view(), name="bias-runs"),
    path("bias-detection/<str:reference>", bias_api.BiasRunDetailApi.as_view(), name="bias-run"),
    path(
        "bias-detection/<str:reference>/calls",
        bias_api.BiasRunCallsApi.as_view(),
        name="bias-run-calls",
    ),
    path("probe-sets", bias_api.ProbeSetListApi.as_view(), name="probe-sets"),
    path("probe-sets/<str:reference>", bias_api.ProbeSetDetailApi.as_view(), name="probe-set"),
    path("report", reports_api.ReportCreateApi.as_view(), name="report-create"),
    path("reports", reports_api.ReportListApi.as_view(), name="reports"),
    path("reports/<str:reference>", reports_api.ReportDetailApi.as_view(), name="report"),
    path(
        "reports/<str:reference>/download",
        reports_api.ReportDownloadApi.as_view(),
        name="report-download",
    ),
]
