"""The auditor's check: walk audit chains and receipt chains, with their checkpoints."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from accounts.management.commands._helpers import organization_lookup
from compliance.checkpoints import checkpointed_scopes
from compliance.models import AuditChain, ChainKind
from compliance.verify import ChainReport, audit_chain_report, receipts_chain_report
from healthcare.models import Receipt, ReceiptChain


def _receipt_orgs() -> set[str]:
    heads = ReceiptChain.objects.values_list("organization_id", flat=True)
    stored = Receipt.objects.values_list("organization_id", flat=True).distinct()
    return {str(org_id) for org_id in (*heads, *stored)} | checkpointed_scopes(ChainKind.RECEIPTS)


def _reports_all() -> Iterator[ChainReport]:
    audit = set(AuditChain.objects.values_list("scope", flat=True))
    for scope in sorted(audit | checkpointed_scopes(ChainKind.AUDIT)):
        yield audit_chain_report(scope=scope)
    for scope in sorted(_receipt_orgs()):
        try:
            org_id = uuid.UUID(scope)
        except ValueError:
            continue
        yield receipts_chain_report(org_id)


def _reports_org(value: str) -> Iterator[ChainReport]:
    organization = organization_lookup(value)
    scope = str(organization.pk)
    yield audit_chain_report(scope=scope)
    if scope in _receipt_orgs():
        yield receipts_chain_report(organization.pk)


class Command(BaseCommand):
    help = (
        "Verify audit chains and receipt chains (every link, the head, the signed "
        "checkpoints). Exit 0 if all are intact, 1 if any is broken (printing where)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        which = parser.add_mutually_exclusive_group()
        which.add_argument("--org", help="One organisation (id or slug): its chains.")
        which.add_argument(
            "--all", action="store_true", help="Every chain (the default), global included."
        )
        parser.add_argument("--json", action="store_true", help="One JSON document.")

    def handle(self, *args: Any, **options: Any) -> None:
        reports = list(_reports_org(options["org"]) if options["org"] else _reports_all())
        broken = [report for report in reports if not report.valid]
        if options["json"]:
            body = {
                "valid": not broken,
                "chains": [report.as_dict() for report in reports],
            }
            self.stdout.write(json.dumps(body, indent=2))
        else:
            for report in reports:
                self.stdout.write(self._line(report))
            self.stdout.write(
                f"{len(reports)} chain(s) checked: "
                + (f"{len(broken)} broken." if broken else "all intact.")
            )
        if broken:
            raise SystemExit(1)

    @staticmethod
    def _line(report: ChainReport) -> str:
        rows = "events" if report.kind == ChainKind.AUDIT else "receipts"
        head = f"{report.kind} {report.scope}: {report.length} {rows}, "
        first = report.first_break
        if first is None:
            return head + f"intact ({report.checked} checked)"
        where = f"at {first.sequence}" if first.sequence is not None else "(checkpoint)"
        row = f" (row {first.row_id})" if first.row_id is not None else ""
        lines = [head + f"BROKEN {where}{row}: {first.reason}"]
        lines += [f"    also: {b.reason}" for b in report.breaks[1:]]
        return "\n".join(lines)
