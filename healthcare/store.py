"""Storing an issued receipt: the row's values, written by the ORM (embedded mode, tests,
the API) or by the data plane's own PostgreSQL writer (``gateway.dataplane.receipts``)."""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import datetime

from healthcare.models import Receipt as ReceiptRow
from healthcare.receipts import Receipt, canonical_json
from healthcare.signing import b64url_decode, key_id

COLUMNS = (
    "organization_id",
    "attestation_id",
    "trace_id",
    "api_key_id",
    "model",
    "outcome",
    "high_risk",
    "issued_at",
    "key_id",
    "document",
)


@dataclass(frozen=True, slots=True)
class ReceiptValues:
    """One row, in ``COLUMNS`` order."""

    organization_id: uuid.UUID
    attestation_id: uuid.UUID
    trace_id: str
    api_key_id: uuid.UUID | None
    model: str
    outcome: str
    high_risk: bool
    issued_at: datetime
    key_id: str
    document: str

    def as_tuple(self) -> tuple[object, ...]:
        # Not dataclasses.astuple: it deep-copies every value.
        return (
            self.organization_id,
            self.attestation_id,
            self.trace_id,
            self.api_key_id,
            self.model,
            self.outcome,
            self.high_risk,
            self.issued_at,
            self.key_id,
            self.document,
        )


@functools.lru_cache(maxsize=16)
def _key_id(public_key: str) -> str:
    """The signing key's id: one per issuer key, not a hash per receipt."""
    return key_id(b64url_decode(public_key))


def receipt_document(receipt: Receipt) -> str:
    """The receipt as stored and chained: RFC 8785 JSON, signature included."""
    return canonical_json(receipt).decode("utf-8")


def receipt_values(receipt: Receipt, *, api_key_id: str | None, high_risk: bool) -> ReceiptValues:
    return ReceiptValues(
        organization_id=uuid.UUID(receipt["org_id"]),
        attestation_id=uuid.UUID(receipt["attestation_id"]),
        trace_id=receipt["trace_id"],
        api_key_id=uuid.UUID(api_key_id) if api_key_id else None,
        model=receipt["model"],
        outcome=receipt["outcome"],
        high_risk=high_risk,
        issued_at=datetime.fromisoformat(receipt["timestamp"]),
        key_id=_key_id(receipt["public_key"]),
        document=receipt_document(receipt),
    )


def receipt_store(values: ReceiptValues) -> ReceiptRow:
    """Insert the row (synchronously, through the ORM)."""
    return ReceiptRow.objects.create(**dict(zip(COLUMNS, values.as_tuple(), strict=True)))
