from __future__ import annotations

from django.urls import path

from compliance import api

app_name = "compliance"

urlpatterns = [
    path("audit-trail", api.AuditTrailApi.as_view(), name="audit-trail"),
]
