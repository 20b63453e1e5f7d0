"""Receipts for tests: issued, stored and linked as the /v1 path and the linker would, one
at a time (:func:`receipt_make`) or by the hundred thousand (:func:`receipts_bulk`)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection

from accounts.models import Organization
from healthcare.chain import chain_hash, chain_link
from healthcare.models import Receipt, ReceiptChain
from healthcare.receipts import canonical_bytes, receipt_issue
from healthcare.signing import IssuerKey, b64url_encode, issuer_key
from healthcare.store import receipt_store, receipt_values

WHEN = datetime(2026, 4, 23, 10, 15, 30, 123456, tzinfo=UTC)


def trace_id(n: int) -> str:
    return f"tr_{n:032x}"


def receipt_make(
    organization: Organization,
    *,
    api_key_id: str | uuid.UUID | None = None,
    high_risk: bool = False,
    link: bool = True,
    **fields: Any,
) -> Receipt:
    """One receipt of ``organization``: issued (defaults below, ``fields`` override them),
    stored and, unless ``link=False``, linked into the organisation's chain."""
    issued: dict[str, Any] = {
        "trace_id": trace_id(uuid.uuid4().int >> 1),
        "org_id": str(organization.pk),
        "request_hash": hashlib.sha256(uuid.uuid4().bytes).hexdigest(),
        "model": "gpt-4o-mini",
        "outcome": "BLOCKED",
        "policy_applied": ["budget", "pii"],
        "cost_prevented_eur": Decimal("0.0042"),
        **fields,
    }
    receipt = receipt_issue(**issued)
    row = receipt_store(
        receipt_values(
            receipt, api_key_id=str(api_key_id) if api_key_id else None, high_risk=high_risk
        )
    )
    if link:
        chain_link(organization.pk)
        row.refresh_from_db()
    return row


# --- many at once ---------------------------------------------------------------------------

_ID = "00000000-0000-4000-8000-000000000000"
_TRACE = trace_id(0)
_TIME = "2000-01-01T00:00:00.000000+00:00"


def _template(organization: Organization, key: IssuerKey, model: str) -> str:
    """Canonical bytes of a receipt with placeholders for what differs between rows (all
    of fixed width, so the canonical key order holds)."""
    receipt = receipt_issue(
        trace_id=_TRACE,
        org_id=str(organization.pk),
        request_hash="ab" * 32,
        model=model,
        outcome="BLOCKED",
        policy_applied=["budget", "données"],
        cost_prevented_eur=Decimal("0.000015"),
        timestamp=datetime.fromisoformat(_TIME),
        attestation_id=uuid.UUID(_ID),
        key=key,
    )
    return canonical_bytes(receipt).decode()


def _signed_rows(
    organization: Organization, count: int, key: IssuerKey, start: datetime, model: str
) -> Iterator[tuple[Receipt, str]]:
    template = _template(organization, key, model)
    for n in range(count):
        attestation = uuid.uuid4()
        issued = start + timedelta(milliseconds=n)
        unsigned = (
            template.replace(_ID, str(attestation))
            .replace(_TRACE, trace_id(n + 1))
            .replace(_TIME, issued.isoformat(timespec="microseconds"))
        )
        signature = b64url_encode(key.sign(unsigned.encode()))
        # "signature" sorts between "request_hash" and "timestamp".
        document = unsigned.replace('"timestamp":', f'"signature":"{signature}","timestamp":')
        row = Receipt(
            organization_id=organization.pk,
            attestation_id=attestation,
            trace_id=trace_id(n + 1),
            model=model,
            outcome="BLOCKED",
            issued_at=issued,
            key_id=key.key_id,
            document=document,
        )
        yield row, document


def receipts_bulk(
    organization: Organization,
    count: int,
    *,
    key: IssuerKey | None = None,
    start: datetime = WHEN,
    model: str = "gpt-4o-mini",
    batch: int = 5_000,
) -> int:
    """``count`` valid, signed, linked receipts appended to the organisation's chain in
    bulk (a millisecond apart from ``start``); the chain's new length."""
    key = key or issuer_key()
    head, _ = ReceiptChain.objects.get_or_create(organization=organization)
    pending: list[Receipt] = []
    for row, document in _signed_rows(organization, count, key, start, model):
        row.sequence = head.length + 1
        row.prev_hash = head.last_hash
        row.chain_hash = head.last_hash = chain_hash(head.last_hash, document)
        head.length = row.sequence
        pending.append(row)
        if len(pending) == batch:
            Receipt.objects.bulk_create(pending)
            pending = []
    Receipt.objects.bulk_create(pending)
    head.save()
    return head.length


# --- an attacker with the database ------------------------------------------------------------


def raw_sql(sql: str, params: list[Any] | tuple[Any, ...] = ()) -> None:
    """Run ``sql`` with the append-only triggers off (PostgreSQL), as someone with the
    database's owner rights could; on SQLite there are no triggers to turn off."""
    postgresql = connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        if postgresql:
            # The test's transaction holds deferred foreign-key checks of its inserts, and
            # ALTER TABLE waits for none: run them now.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute("ALTER TABLE healthcare_receipt DISABLE TRIGGER USER")
        try:
            cursor.execute(sql, params)
        finally:
            if postgresql:
                cursor.execute("ALTER TABLE healthcare_receipt ENABLE TRIGGER USER")
                cursor.execute("SET CONSTRAINTS ALL DEFERRED")
