"""DRF authentication for /api: an API key of the organisation, or the dashboard session."""

from __future__ import annotations

from django.utils import timezone
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from accounts.models import ApiKey
from accounts.selectors import api_key_get_by_secret
from accounts.services import api_key_touch
from aqta.errors import ErrorCode


class KeyPrincipal:
    """``request.user`` when a call is authenticated by an API key rather than a person."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False
    pk = None

    def __init__(self, api_key: ApiKey) -> None:
        self.api_key = api_key

    @property
    def label(self) -> str:
        return f"api_key:{self.api_key.masked}"

    def __str__(self) -> str:
        return self.label


def bearer_token(request) -> str | None:
    """The bearer token from ``Authorization`` or the British ``Authorisation`` header."""
    meta = request.META
    header = meta.get("HTTP_AUTHORIZATION") or meta.get("HTTP_AUTHORISATION") or ""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip()


class ApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request: Request):
        token = bearer_token(request)
        if token is None:
            return None
        api_key = api_key_get_by_secret(secret=token)
        if api_key is None:
            # Unknown, revoked, expired or malformed: one answer, so none can be told apart.
            raise exceptions.AuthenticationFailed(
                "Invalid API key provided.", code=ErrorCode.INVALID_API_KEY
            )
        api_key_touch(api_key=api_key, now=timezone.now())
        return KeyPrincipal(api_key), api_key

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="aqta"'


class SessionAuthentication(authentication.SessionAuthentication):
    """DRF's session auth (CSRF enforced on writes), answering 401 rather than 403."""

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="aqta"'
