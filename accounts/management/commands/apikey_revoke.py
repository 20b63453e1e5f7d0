from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from accounts.management.commands._helpers import api_key_lookup
from accounts.services import api_key_revoke


class Command(BaseCommand):
    help = "Revoke an API key by id."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("key_id")

    def handle(self, *args: Any, key_id: str, **options: Any) -> None:
        api_key = api_key_revoke(api_key=api_key_lookup(key_id), actor_label="cli")
        self.stdout.write(f"Revoked {api_key.pk} ({api_key.masked}) at {api_key.revoked_at:%c}")
