"""Sign the head of every audit and receipt chain now (what the beat task does)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from compliance.checkpoints import StoreError, checkpoint_run


class Command(BaseCommand):
    help = (
        "Sign the head of every audit and receipt chain that moved since its last checkpoint "
        "and write them to the checkpoint store. Exit 1 if a chain no longer extends its "
        "last checkpoint (it is then not signed again), 2 if the store cannot be written."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print the run as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            run = checkpoint_run()
        except StoreError as error:
            raise CommandError(str(error), returncode=2) from error
        if options["json"]:
            self.stdout.write(json.dumps(run.as_dict(), indent=2))
        elif run.file:
            kind = "full" if run.full else "delta"
            self.stdout.write(
                f"Wrote {run.file} ({kind}): {run.signed} chain(s) signed, "
                f"{run.carried} carried over."
            )
        else:
            self.stdout.write("Nothing moved since the last checkpoint.")
        for problem in run.breaks:
            where = f" at {problem.sequence}" if problem.sequence is not None else ""
            self.stderr.write(f"BROKEN {problem.kind} {problem.scope}{where}: {problem.reason}")
        if run.breaks:
            raise SystemExit(1)
