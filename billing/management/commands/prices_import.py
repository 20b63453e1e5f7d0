"""``manage.py prices_import``: compare the price book with genai-prices and apply the changes.

Exit status: 0 done (or, with ``--check``, nothing differs); 1 with ``--check`` when
something differs, or with ``--apply`` when a change could not be applied; 2 bad arguments
or an unreadable source.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from billing import price_import as pi
from billing.models import Provider
from billing.price_source import load_providers


class Command(BaseCommand):
    help = (
        "Compare model prices and context windows with the genai-prices database (the data "
        "bundled with the installed package, offline) and, with --apply, record the changes "
        "as new price periods."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--apply", action="store_true", help="record the differences (default: show only)"
        )
        parser.add_argument(
            "--add-models",
            action="store_true",
            help="also add the source's models the catalogue lacks (inactive)",
        )
        parser.add_argument(
            "--check",
            action="store_true",
            help="exit 1 if anything differs (for cron or CI); changes nothing",
        )
        parser.add_argument(
            "--provider",
            action="append",
            default=[],
            choices=Provider.values,
            help="only this provider (repeatable)",
        )
        parser.add_argument(
            "--model",
            action="append",
            default=[],
            metavar="PATTERN",
            help="only model ids matching this shell pattern, e.g. 'gpt-6*' (repeatable)",
        )
        source = parser.add_mutually_exclusive_group()
        source.add_argument(
            "--latest",
            action="store_true",
            help="fetch genai-prices' current data over the network instead of the bundled one",
        )
        source.add_argument(
            "--url", help="fetch genai-prices data (its JSON format) from this URL instead"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["check"] and options["apply"]:
            raise CommandError("--check only reports; use it without --apply.", returncode=2)
        providers, described = load_providers(url=options["url"], latest=options["latest"])
        now = timezone.now()
        plan = pi.plan(
            providers,
            now=now,
            provider_filter=options["provider"],
            model_patterns=options["model"],
        )
        if options["model"] and not (
            plan.diffs or plan.new_models or plan.not_in_source or plan.unmappable
        ):
            patterns = ", ".join(options["model"])
            raise CommandError(
                f"--model {patterns} matches no model of the catalogue or the price data.",
                returncode=2,
            )
        self.stdout.write(f"Price data: {described}; compared at {now:%Y-%m-%d %H:%M} UTC.")
        self._report(plan, add_models=options["add_models"])
        differences = plan.differences(with_new_models=options["add_models"])
        if options["check"]:
            self.stdout.write(self._summary(plan, add_models=options["add_models"]))
            if differences:
                raise SystemExit(1)
            return
        if not options["apply"]:
            self.stdout.write(self._summary(plan, add_models=options["add_models"]))
            if differences:
                self.stdout.write("Nothing applied: run with --apply to record these changes.")
            return
        if not differences:
            self.stdout.write(self._summary(plan, add_models=options["add_models"]))
            self.stdout.write("Nothing to apply: the price book already matches the price data.")
            return
        outcome = pi.apply(plan, add_models=options["add_models"])
        self._report_outcome(plan, outcome, add_models=options["add_models"])
        if outcome.failed:
            raise SystemExit(1)

    # --- output --------------------------------------------------------------------------

    def _report(self, plan: pi.Plan, *, add_models: bool) -> None:
        rows: list[list[str]] = []
        for diff in plan.changed:
            for period in diff.periods:
                starts = (f"{period.starts:%Y-%m-%d}" if period.starts else "on --apply") + (
                    f" (source: {period.source_since:%Y-%m-%d})" if period.source_since else ""
                )
                for change in period.changes:
                    rows.append(
                        [
                            diff.model.model_id,
                            pi.FIELD_LABELS[change.field],
                            pi.fmt(change.current),
                            pi.fmt(change.source),
                            starts,
                        ]
                    )
            if diff.context_window is not None:
                rows.append(
                    [
                        diff.model.model_id,
                        pi.FIELD_LABELS["context_window"],
                        pi.fmt(diff.context_window.current),
                        pi.fmt(diff.context_window.source),
                        "on --apply",
                    ]
                )
        if rows:
            self._section(
                f"Changes ({_count(len(plan.changed), 'model')}; "
                "prices in USD per 1M tokens, fees per request)",
                ["model", "field", "recorded", "source", "starts"],
                rows,
            )
        if plan.new_models:
            self._section(
                f"New in the price data ({len(plan.new_models)}; "
                + ("added inactive)" if add_models else "added inactive with --add-models)"),
                ["provider", "model", "input", "output", "cached", "context", "cost-effective"],
                [
                    [
                        new.provider,
                        new.model_id,
                        pi.fmt(new.periods[0].prices["input_usd_per_mtok"]),
                        pi.fmt(new.periods[0].prices["output_usd_per_mtok"]),
                        pi.fmt(new.periods[0].prices["cached_input_usd_per_mtok"]),
                        pi.fmt(new.context_window),
                        "yes" if new.cost_effective else "no",
                    ]
                    for new in plan.new_models
                ],
            )
        notes = [
            [diff.model.model_id, note] for diff in plan.diffs for note in dict.fromkeys(diff.notes)
        ]
        if notes:
            self._section("Notes", ["model", "note"], notes)
        skipped = [
            *([s.model_id, s.provider, s.reason] for s in plan.unmappable),
            *([s.model_id, s.provider, s.reason] for s in plan.not_in_source),
        ]
        if skipped:
            self._section("Not compared", ["model", "provider", "why"], skipped)

    def _section(self, title: str, headers: list[str], rows: Sequence[list[str]]) -> None:
        self.stdout.write("")
        self.stdout.write(title)
        widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
        for row in [headers, *rows]:
            self.stdout.write(
                "  "
                + "  ".join(
                    cell.ljust(width) for cell, width in zip(row, widths, strict=True)
                ).rstrip()
            )

    def _summary(self, plan: pi.Plan, *, add_models: bool) -> str:
        parts = [
            f"{_count(len(plan.changed), 'model')} with changes",
            _count(len(plan.new_models), "new model") + ("" if add_models else " (not counted)"),
            f"{plan.unchanged} unchanged",
            f"{len(plan.not_in_source) + len(plan.unmappable)} not compared",
        ]
        return "\n" + "Summary: " + ", ".join(parts) + "."

    def _report_outcome(self, plan: pi.Plan, outcome: pi.Outcome, *, add_models: bool) -> None:
        self.stdout.write("")
        self.stdout.write(
            f"Applied: {_count(len(outcome.applied), 'model')} updated"
            + (f" ({', '.join(outcome.applied)})" if outcome.applied else "")
            + f", {len(outcome.added)} added inactive"
            + (f" ({', '.join(outcome.added)})" if outcome.added else "")
            + "."
        )
        if plan.new_models and not add_models:
            self.stdout.write(
                f"{_count(len(plan.new_models), 'new model')} not added: run with --add-models to "
                "add them."
            )
        for failed in outcome.failed:
            self.stderr.write(
                f"Not applied: {failed.model_id} ({failed.provider}): {failed.reason}"
            )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")
