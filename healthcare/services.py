"""What the receipts API and the dashboard do beyond reading: verify a stored receipt or a
submitted document, and record each verification and export in the audit log."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import rfc8785
from django.http import HttpRequest

from accounts.models import Organization, User
from compliance.services import audit_event_record
from healthcare.chain import ReceiptCheck, document_check, receipt_check
from healthcare.models import Receipt
from healthcare.selectors import receipt_by_attestation


@dataclass(frozen=True)
class Actor:
    """Who asks, as the audit log records it."""

    user: User | None
    label: str
    request: HttpRequest | None = None


def receipt_verify_record(*, receipt: Receipt, actor: Actor) -> ReceiptCheck:
    """Check a stored receipt (``healthcare.chain.receipt_check``) and audit the verdict."""
    result = receipt_check(receipt)
    audit_event_record(
        action="receipt.verified",
        organization=receipt.organization,
        actor=actor.user,
        actor_label=actor.label,
        target=str(receipt.pk),
        request=actor.request,
        data={
            "attestation_id": str(receipt.attestation_id),
            "sequence": receipt.sequence,
            **result.as_dict(),
        },
    )
    return result


@dataclass(frozen=True)
class DocumentVerdict:
    valid: bool
    reason: str
    key_id: str | None
    stored: Receipt | None
    identical: bool | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "reason": self.reason,
            "key_id": self.key_id,
            "stored": self.stored is not None,
            "identical": self.identical,
            "id": self.stored.pk if self.stored is not None else None,
        }


def _same_receipt(document: object, stored: Receipt) -> bool:
    """The submitted document is the stored one: the same RFC 8785 bytes."""
    try:
        return rfc8785.dumps(document) == stored.document.encode("utf-8")  # type: ignore[arg-type]
    except Exception:  # whatever cannot be canonicalised is not what we stored
        return False


def document_verify_record(
    *, organization: Organization, document: object, actor: Actor
) -> DocumentVerdict:
    """Judge a receipt someone was shown (``healthcare.chain.document_check``), say whether
    this organisation holds it and whether the stored copy is the same, and audit it."""
    verdict = document_check(document)
    claimed = document.get("attestation_id") if isinstance(document, dict) else None
    stored = receipt_by_attestation(organization=organization, attestation_id=claimed)
    identical = _same_receipt(document, stored) if stored is not None else None
    result = DocumentVerdict(verdict.valid, verdict.reason, verdict.key_id, stored, identical)
    audit_event_record(
        action="receipt.document_verified",
        organization=organization,
        actor=actor.user,
        actor_label=actor.label,
        # Only a well-formed id goes into the log; anything else was the caller's text.
        target=str(stored.attestation_id) if stored is not None else "",
        request=actor.request,
        data={k: v for k, v in result.as_dict().items() if k != "reason"}
        | {"reason": verdict.reason[:300]},
    )
    return result


def export_record(
    *, organization: Organization, actor: Actor, export_format: str, filters: dict[str, Any]
) -> None:
    """Audit an export: who took which receipts, in what form."""
    audit_event_record(
        action="receipt.exported",
        organization=organization,
        actor=actor.user,
        actor_label=actor.label,
        target=export_format,
        request=actor.request,
        data={"format": export_format, **{k: _plain(v) for k, v in filters.items()}},
    )


def _plain(value: object) -> object:
    """A filter value as JSON holds it (instants and ids as text)."""
    return value if isinstance(value, bool | int | str) or value is None else str(value)
