from __future__ import annotations

from django.urls import path

from accounts import api

app_name = "accounts_api"

urlpatterns = [
    path("auth/login", api.AuthLoginApi.as_view(), name="login"),
    path("auth/signup", api.AuthSignupApi.as_view(), name="signup"),
    path("auth/oauth-signin", api.AuthOAuthSigninApi.as_view(), name="oauth-signin"),
    path("auth/logout", api.AuthLogoutApi.as_view(), name="logout"),
    path("auth/me", api.AuthMeApi.as_view(), name="me"),
    path("keys", api.ApiKeyListCreateApi.as_view(), name="keys"),
    path("keys/<str:key_id>", api.ApiKeyDetailApi.as_view(), name="key-detail"),
]
