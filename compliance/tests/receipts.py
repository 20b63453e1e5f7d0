"""Stored, linked receipts for the compliance tests (issued and chained as the gateway does)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from healthcare.chain import chain_link
from healthcare.models import Receipt
from healthcare.receipts import receipt_issue
from healthcare.store import receipt_store, receipt_values


def receipts_make(organization, count: int, *, issued: datetime | None = None) -> list[Receipt]:
    start = issued or datetime.now(UTC) - timedelta(minutes=count)
    for n in range(count):
        receipt = receipt_issue(
            trace_id="tr_" + uuid.uuid4().hex,
            org_id=str(organization.pk),
            request_hash="a" * 64,
            model="gpt-4o-mini",
            outcome="ALLOWED",
            timestamp=start + timedelta(seconds=n),
        )
        receipt_store(receipt_values(receipt, api_key_id=None, high_risk=False))
    chain_link(organization.pk)
    return list(Receipt.objects.filter(organization=organization).order_by("sequence"))
