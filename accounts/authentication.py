"""DRF authentication for /api: an API key of the organisation, or the dashboard session.

And who made a request, typed: ``request_principal`` (a person or a key, for API views)
and ``request_user`` (a person, for views that admit nothing else).
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.utils import timezone
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from accounts.models import ApiKey, User
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


def request_principal(request: Request) -> User | KeyPrincipal:
    """The authenticated caller of an API view: a person, or an API key's principal.

    Anonymous callers never reach the views (``IsAuthenticated``); should one, it is a 401.
    """
    # Typed as object: the stubs know only users, not the principal ApiKeyAuthentication sets.
    principal: object = request.user
    if isinstance(principal, User | KeyPrincipal):
        return principal
    raise exceptions.NotAuthenticated()


def request_user(request: HttpRequest | Request) -> User:
    """The signed-in person making ``request``, in views that admit only people (the
    dashboard, the admin, session-only API calls); anyone else is refused with 403."""
    user: object = request.user
    if isinstance(user, User):
        return user
    raise PermissionDenied("This needs a signed-in user.")


def bearer_token(request: Request) -> str | None:
    """The bearer token from ``Authorization`` or the British ``Authorisation`` header."""
    meta = request.META
    header = meta.get("HTTP_AUTHORIZATION") or meta.get("HTTP_AUTHORISATION") or ""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip()


class ApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[KeyPrincipal, ApiKey] | None:
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
