"""Included under ``api/health/`` (aqta/urls.py): the high-risk rules, and one rule."""

from __future__ import annotations

from django.urls import path

from healthcare import rules_api

app_name = "high_risk_rules"

urlpatterns = [
    path("high-risk-rules", rules_api.HighRiskRuleListCreateApi.as_view(), name="list"),
    path("high-risk-rules/<str:rule_id>", rules_api.HighRiskRuleDetailApi.as_view(), name="detail"),
]
