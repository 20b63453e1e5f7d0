from __future__ import annotations

from django.urls import path

from gateway.analytics import api as analytics_api

app_name = "analytics"

urlpatterns = [
    path("requests", analytics_api.AnalyticsRequestsApi.as_view(), name="requests"),
    path("costs", analytics_api.AnalyticsCostsApi.as_view(), name="costs"),
]
