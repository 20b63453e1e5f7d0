from __future__ import annotations

from allauth.account.decorators import secure_admin_login
from allauth.account.views import LoginView
from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from django_ratelimit.decorators import ratelimit
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from accounts import views as dashboard_views
from accounts.throttling import client_ip
from gateway import views as ops

# The admin login goes through allauth's login (its rate limits, MFA), and the HTML
# login shares the API login's per-IP throttle group.
admin.site.login = secure_admin_login(admin.site.login)  # type: ignore[method-assign]
admin.site.site_header = "Aqta operations"
admin.site.site_title = "Aqta admin"

throttled_login = ratelimit(
    group="auth-login",
    key=client_ip,
    rate=lambda group, request: settings.AQTA_API_LOGIN_RATE,
    method="POST",
    block=True,
)(LoginView.as_view())

urlpatterns = [
    path("", dashboard_views.home, name="home"),
    path("healthz", ops.healthz, name="healthz"),
    path("readyz", ops.readyz, name="readyz"),
    path("metrics", ops.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("accounts/login/", throttled_login, name="account_login"),
    path("accounts/", include("allauth.urls")),
    path("api/", include("accounts.urls")),
    path("api/analytics/", include("gateway.analytics.urls")),
    path("api/health/", include("healthcare.rules_urls")),
    path("api/health/", include("healthcare.urls")),
    path("api/compliance/", include("compliance.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("dashboard/", include("accounts.dashboard_urls")),
]

handler400 = "aqta.errors.handler400"
handler403 = "aqta.errors.handler403"
handler404 = "aqta.errors.handler404"
handler500 = "aqta.errors.handler500"
