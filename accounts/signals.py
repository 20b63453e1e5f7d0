"""Audit records for authentication events (from Django's and allauth's signals).

Receivers only hand over to the audit service; they hold no logic of their own.
"""

from __future__ import annotations

from typing import Any

from allauth.account.signals import user_signed_up
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver
from django.http import HttpRequest

from accounts.models import User
from compliance.services import audit_event_record


@receiver(user_logged_in)
def _logged_in(sender: type[User], request: HttpRequest | None, user: User, **kwargs: Any) -> None:
    audit_event_record(action="auth.login", actor=user, request=request)


@receiver(user_logged_out)
def _logged_out(
    sender: type, request: HttpRequest | None, user: User | None, **kwargs: Any
) -> None:
    if user is not None:
        audit_event_record(action="auth.logout", actor=user, request=request)


@receiver(user_login_failed)
def _login_failed(
    sender: str, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    # Django has already masked the password in ``credentials``.
    attempted = str(credentials.get("email") or credentials.get("username") or "")[:254]
    audit_event_record(
        action="auth.login_failed", actor_label=attempted, request=request, target=attempted
    )


@receiver(user_signed_up)
def _signed_up(sender: type[User], request: HttpRequest | None, user: User, **kwargs: Any) -> None:
    sociallogin = kwargs.get("sociallogin")
    method = sociallogin.account.provider if sociallogin else "password"
    audit_event_record(action="auth.signup", actor=user, request=request, data={"method": method})
