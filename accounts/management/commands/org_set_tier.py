from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.management.commands._helpers import organization_lookup
from accounts.services import organization_change_tier
from aqta.errors import AqtaError
from billing.selectors import tier_get


class Command(BaseCommand):
    help = "Move an organisation (id or slug) to another tier."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("organization", help="Organisation id or slug.")
        parser.add_argument("--tier", required=True)

    def handle(self, *args: Any, organization: str, tier: str, **options: Any) -> None:
        org = organization_lookup(organization)
        try:
            tier_obj = tier_get(slug=tier)
        except AqtaError as error:
            raise CommandError(error.message) from None
        organization_change_tier(organization=org, tier=tier_obj, actor_label="cli")
        self.stdout.write(f"{org.slug} is now on {tier_obj.slug}")
