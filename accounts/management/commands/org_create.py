from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from accounts.models import User
from accounts.selectors import user_get_by_email
from accounts.services import organization_create
from aqta.errors import AqtaError
from billing.selectors import tier_get


class Command(BaseCommand):
    help = "Create an organisation on a tier, owned by a user (created without a password if new)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True)
        parser.add_argument("--tier", required=True, help="Tier slug, e.g. free, starter, pro.")
        parser.add_argument("--owner-email", required=True)

    @transaction.atomic
    def handle(self, *args: Any, name: str, tier: str, owner_email: str, **options: Any) -> None:
        try:
            tier_obj = tier_get(slug=tier)
        except AqtaError as error:
            raise CommandError(error.message) from None
        owner = user_get_by_email(email=owner_email)
        if owner is None:
            owner = User.objects.create_user(email=owner_email)
            self.stderr.write(f"Created user {owner.email} (no password: use password reset).")
        organization = organization_create(name=name, owner=owner, tier=tier_obj, actor_label="cli")
        self.stdout.write(f"{organization.pk} {organization.slug} {tier_obj.slug}")
