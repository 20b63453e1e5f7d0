"""Verify a downloaded compliance report (PDF or JSON) against the issuer's public keys."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

from django.core.management.base import BaseCommand, CommandError, CommandParser

from compliance.reports.verify import report_file_verify
from healthcare.keyring import published
from healthcare.signing import b64url_decode, key_id


def _pinned(given: list[str]) -> dict[str, str]:
    """The keys to trust: those given, else every issuer key this deployment has had."""
    if not given:
        known = published()
        keys = cast(list[dict[str, str]], known["keys"])
        return {str(known["key_id"]): str(known["public_key"])} | {
            k["key_id"]: k["public_key"] for k in keys
        }
    pinned = {}
    for public in given:
        try:
            raw = b64url_decode(public)
        except ValueError:
            raise CommandError(f"not a base64url public key: {public[:20]}") from None
        pinned[key_id(raw)] = public
    return pinned


class Command(BaseCommand):
    help = (
        "Check a downloaded compliance report: the signature of its content by an issuer "
        "key (this deployment's, or --public-key), its hash, and for a PDF that the hash "
        "it prints is the signed one. Exit status 0 when valid, 1 when not."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="The report file (.pdf or .json).")
        parser.add_argument(
            "--public-key",
            action="append",
            default=[],
            help="Trust this base64url Ed25519 public key (as GET /v1/attestation/public-key "
            "gives it) instead of this deployment's keys; may be repeated.",
        )
        parser.add_argument("--json", action="store_true", help="Print the verdict as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["file"])
        try:
            data = path.read_bytes()
        except OSError as error:
            raise CommandError(f"cannot read {path}: {error.strerror}") from None
        verdict, document = report_file_verify(data, _pinned(options["public_key"]))
        report = document.get("report") if isinstance(document, dict) else None
        summary = {
            **verdict.as_dict(),
            "report_id": report.get("id") if isinstance(report, dict) else None,
            "period": report.get("period") if isinstance(report, dict) else None,
        }
        if options["json"]:
            self.stdout.write(json.dumps(summary, indent=2))
        elif verdict.valid:
            period = summary["period"] or {}
            span = f"{period.get('start')}..{period.get('end')}"
            self.stdout.write(
                f"valid: report {summary['report_id']} for {span}, "
                f"content sha256 {verdict.content_sha256}, signed by key {verdict.key_id}"
            )
        else:
            self.stdout.write(f"INVALID: {verdict.reason}")
        if not verdict.valid:
            raise SystemExit(1)
