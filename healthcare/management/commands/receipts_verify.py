"""Walk each organisation's receipt chain and say where it is broken (an auditor's check,
runnable from cron: exit 0 every chain intact, 1 any broken)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Q, QuerySet

from accounts.management.commands._helpers import organization_lookup
from accounts.models import Organization
from healthcare.chain import ChainVerdict, chain_verify


def _with_receipts() -> QuerySet[Organization]:
    has_chain = Q(receipt_chain__isnull=False) | Q(receipts__isnull=False)
    return Organization.objects.filter(has_chain).distinct().order_by("slug")


def _line(organization: Organization, verdict: ChainVerdict) -> str:
    if verdict.valid:
        return f"{organization.slug}\tintact\t{verdict.length:,} receipts checked"
    where = f"receipt {verdict.sequence}"
    if verdict.receipt_id is not None:
        where += f" (id {verdict.receipt_id})"
    return f"{organization.slug}\tBROKEN at {where}: {verdict.reason}"


class Command(BaseCommand):
    help = (
        "Verify receipt chains: every receipt's signature and fields, and that none is "
        "missing, reordered or changed. Exit 0 when intact, 1 when any chain is broken."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        which = parser.add_mutually_exclusive_group()
        which.add_argument("--org", help="One organisation (id or slug).")
        which.add_argument(
            "--all", action="store_true", help="Every organisation with receipts (default)."
        )
        parser.add_argument(
            "--json", dest="as_json", action="store_true", help="One JSON object on stdout."
        )

    def handle(self, *args: Any, org: str | None, as_json: bool, **options: Any) -> None:
        organizations = [organization_lookup(org)] if org else list(_with_receipts())
        results = [(o, chain_verify(o.pk)) for o in organizations]
        broken = [o for o, verdict in results if not verdict.valid]
        if as_json:
            self._json(results)
        else:
            for organization, verdict in results:
                self.stdout.write(_line(organization, verdict))
        if broken:
            raise CommandError(
                f"{len(broken)} of {len(results)} receipt chains broken: "
                + ", ".join(o.slug for o in broken),
                returncode=1,
            )
        if not as_json:
            self.stdout.write(f"{len(results)} receipt chain(s) intact.")

    def _json(self, results: list[tuple[Organization, ChainVerdict]]) -> None:
        report = {
            "valid": all(verdict.valid for _, verdict in results),
            "organizations": [
                {"organization": str(o.pk), "slug": o.slug, **verdict.as_dict()}
                for o, verdict in results
            ],
        }
        self.stdout.write(json.dumps(report))
