from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.management.commands._helpers import organization_lookup
from accounts.models import Organization
from healthcare.rules import high_risk_rules_seed


class Command(BaseCommand):
    help = (
        "Give the default high-risk rules to organisations on a tier with receipts that have "
        "no rule yet: those named (id or slug), or with --all every one (e.g. after granting "
        "receipts to another tier in the admin). Organisations with rules keep them as they are."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("organizations", nargs="*", help="Organisation ids or slugs.")
        parser.add_argument(
            "--all", action="store_true", help="Every organisation on a tier with receipts."
        )

    def handle(self, *args: Any, organizations: list[str], all: bool, **options: Any) -> None:
        if bool(organizations) == all:
            raise CommandError("Name organisations, or give --all (not both).")
        if all:
            targets = list(
                Organization.objects.select_related("tier")
                .filter(tier__receipts=True)
                .order_by("slug")
            )
        else:
            targets = [organization_lookup(value) for value in organizations]
        for organization in targets:
            self.stdout.write(f"{organization.slug}: {self._seed(organization)}")

    @staticmethod
    def _seed(organization: Organization) -> str:
        if not organization.tier.receipts:
            return f"skipped, the {organization.tier.name} tier has no receipts"
        created = high_risk_rules_seed(organization=organization, actor_label="cli")
        return f"{created} default rules added" if created else "unchanged, it has rules already"
