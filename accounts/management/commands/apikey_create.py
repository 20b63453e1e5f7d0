from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from accounts.management.commands._helpers import organization_lookup
from accounts.services import api_key_create
from aqta.errors import AqtaError


class Command(BaseCommand):
    help = "Create an API key; the secret is printed once, alone on stdout's last line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("organization", help="Organisation id or slug.")
        parser.add_argument("--name", required=True)
        parser.add_argument("--expires-in-days", type=int, help="Whole days, at least 1.")
        parser.add_argument("--rate-limit", type=int, help="Requests per minute for this key.")
        parser.add_argument("--allowed-model", action="append", default=[], dest="models")

    def handle(self, *args: Any, organization: str, name: str, **options: Any) -> None:
        org = organization_lookup(organization)
        days = options.get("expires_in_days")
        if days is not None and days < 1:
            raise CommandError("--expires-in-days must be at least 1.")
        try:
            api_key, secret = api_key_create(
                organization=org,
                created_by=None,
                actor_label="cli",
                name=name,
                expires_at=timezone.now() + timedelta(days=days) if days is not None else None,
                rate_limit_per_minute=options.get("rate_limit"),
                allowed_models=options["models"],
            )
        except AqtaError as error:
            raise CommandError(error.message) from None
        self.stderr.write(f"Created key {api_key.pk} ({api_key.masked}) for {org.slug}.")
        self.stdout.write(secret)
