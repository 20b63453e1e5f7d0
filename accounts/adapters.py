"""allauth hooks: every new user, however they sign up, gets a personal organisation."""

from __future__ import annotations

from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from allauth.socialaccount.models import SocialLogin
from django import forms
from django.db import transaction
from django.http import HttpRequest

from accounts.models import User
from accounts.services import organization_create_personal


class AccountAdapter(DefaultAccountAdapter):
    def save_user(
        self, request: HttpRequest, user: User, form: forms.Form, commit: bool = True
    ) -> User:
        with transaction.atomic():
            user = super().save_user(request, user, form, commit=commit)
            if commit:
                organization_create_personal(user=user)
        return user


class SocialAccountAdapter(DefaultSocialAccountAdapter):
    def save_user(
        self, request: HttpRequest, sociallogin: SocialLogin, form: forms.Form | None = None
    ) -> User:
        with transaction.atomic():
            user: User = super().save_user(request, sociallogin, form=form)
            organization_create_personal(user=user)
        return user

    def populate_user(
        self, request: HttpRequest, sociallogin: SocialLogin, data: dict[str, Any]
    ) -> User:
        user: User = super().populate_user(request, sociallogin, data)
        user.name = (data.get("name") or "").strip()[:150]
        return user
