"""Audit records for authentication events (from Django's and allauth's signals).

Receivers only hand over to the audit service; they hold no logic of their own.
"""

from __future__ import annotations

from typing import Any

from allauth.account.signals import password_changed, password_reset, password_set, user_signed_up
from allauth.mfa.signals import authenticator_added, authenticator_removed, authenticator_reset
from allauth.socialaccount.signals import social_account_added, social_account_removed
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


@receiver(social_account_added)
def _oauth_linked(
    sender: Any, request: HttpRequest | None, sociallogin: Any, **kwargs: Any
) -> None:
    """A signed-in user connected a Google or Microsoft account to theirs."""
    provider = sociallogin.account.provider
    audit_event_record(
        action="auth.oauth_linked",
        actor=sociallogin.user,
        request=request,
        target=provider,
        data={"provider": provider},
    )


@receiver(social_account_removed)
def _oauth_unlinked(
    sender: Any, request: HttpRequest | None, socialaccount: Any, **kwargs: Any
) -> None:
    provider = socialaccount.provider
    audit_event_record(
        action="auth.oauth_unlinked",
        actor=socialaccount.user,
        request=request,
        target=provider,
        data={"provider": provider},
    )


def _password(action: str) -> Any:
    def receive(sender: Any, request: HttpRequest | None, user: User, **kwargs: Any) -> None:
        audit_event_record(action=action, actor=user, request=request)

    return receive


def _authenticator(action: str) -> Any:
    def receive(
        sender: Any, request: HttpRequest | None, user: User, authenticator: Any, **kwargs: Any
    ) -> None:
        kind = str(authenticator.type)
        audit_event_record(
            action=action, actor=user, request=request, target=kind, data={"type": kind}
        )

    return receive


# Account security: passwords and second factors (allauth sends these).
_RECEIVERS = [
    (password_changed, _password("auth.password_changed")),
    (password_set, _password("auth.password_set")),
    (password_reset, _password("auth.password_reset")),
    (authenticator_added, _authenticator("auth.mfa_added")),
    (authenticator_removed, _authenticator("auth.mfa_removed")),
    (authenticator_reset, _authenticator("auth.mfa_reset")),
]
for _signal, _receiver in _RECEIVERS:
    _signal.connect(_receiver, dispatch_uid=f"aqta-audit-{id(_signal)}")
