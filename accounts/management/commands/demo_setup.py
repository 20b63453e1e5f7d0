from __future__ import annotations

import secrets
from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction

from accounts.models import ApiKey, Membership, Role, User
from accounts.services import api_key_create, api_key_revoke, organization_create
from billing.selectors import tier_get

DEMO_EMAIL = "demo@aqta.local"
DEMO_ORG_NAME = "Demo"
DEMO_KEY_NAME = "demo"


class Command(BaseCommand):
    help = (
        "Create (or refresh) the demo organisation on the Pro tier, its user and a fresh API "
        "key. Earlier demo keys are revoked, since their secrets cannot be shown again."
    )

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        password = secrets.token_urlsafe(12)
        user = User.objects.filter(email=DEMO_EMAIL).first()
        if user is None:
            user = User.objects.create_user(email=DEMO_EMAIL, name="Demo user")
        user.set_password(password)
        user.save(update_fields=["password"])
        membership = (
            Membership.objects.filter(user=user, role=Role.OWNER, organization__name=DEMO_ORG_NAME)
            .select_related("organization__tier")
            .first()
        )
        if membership is not None:
            organization = membership.organization
        else:
            organization = organization_create(
                name=DEMO_ORG_NAME, owner=user, tier=tier_get(slug="pro"), actor_label="demo_setup"
            )
        old = ApiKey.objects.filter(
            organization=organization, name=DEMO_KEY_NAME, revoked_at__isnull=True
        )
        for api_key in old:
            api_key_revoke(api_key=api_key, actor_label="demo_setup")
        _, secret = api_key_create(
            organization=organization, created_by=user, name=DEMO_KEY_NAME, actor_label="demo_setup"
        )
        self.stdout.write(f"Demo organisation: {organization.name} (tier {organization.tier.name})")
        self.stdout.write(f"Demo login: {DEMO_EMAIL} / {password}")
        self.stdout.write("Demo API key (shown once):")
        self.stdout.write(secret)
