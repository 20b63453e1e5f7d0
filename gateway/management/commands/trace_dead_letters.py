"""List, replay or discard trace dead letters (what the admin's Trace dead letters page
does, for scripts and for hosts without the admin)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from gateway.models import TraceDeadLetter
from gateway.services import dead_letters_discard, dead_letters_replay
from gateway.storage import StorageUnavailable


class Command(BaseCommand):
    help = "List trace dead letters; --replay stores them again, --discard deletes them."

    def add_arguments(self, parser: CommandParser) -> None:
        action = parser.add_mutually_exclusive_group()
        action.add_argument("--replay", action="store_true", help="Try to store them again.")
        action.add_argument("--discard", action="store_true", help="Delete them for good.")
        parser.add_argument(
            "ids", nargs="*", type=int, help="Dead letter ids (default: every one)."
        )

    def handle(
        self, *args: Any, replay: bool, discard: bool, ids: list[int], **options: Any
    ) -> None:
        letters = TraceDeadLetter.objects.all()
        if ids:
            letters = letters.filter(pk__in=ids)
        if replay:
            try:
                stored, failing = dead_letters_replay(letters=letters, actor_label="cli")
            except StorageUnavailable as error:
                raise CommandError(f"nothing can be stored right now: {error}") from error
            self.stdout.write(f"Stored {stored}; {failing} still failing.")
        elif discard:
            discarded = dead_letters_discard(letters=letters, actor_label="cli")
            self.stdout.write(f"Discarded {discarded}.")
        else:
            for letter in letters.order_by("pk"):
                self.stdout.write(
                    f"{letter.pk}\t{letter.created_at:%Y-%m-%d %H:%M:%S}\t{letter.source}\t"
                    f"{letter.trace_id or '-'}\t{letter.attempts}\t{letter.error[:200]}"
                )
