from __future__ import annotations

from django.urls import path

from accounts.api import auth, keys

app_name = "accounts_api"

urlpatterns = [
    path("auth/login", auth.AuthLoginApi.as_view(), name="login"),
    path("auth/signup", auth.AuthSignupApi.as_view(), name="signup"),
    path("auth/oauth-signin", auth.AuthOAuthSigninApi.as_view(), name="oauth-signin"),
    path("auth/logout", auth.AuthLogoutApi.as_view(), name="logout"),
    path("auth/me", auth.AuthMeApi.as_view(), name="me"),
    path("keys", keys.ApiKeyListCreateApi.as_view(), name="keys"),
    path("keys/<str:key_id>", keys.ApiKeyDetailApi.as_view(), name="key-detail"),
]
