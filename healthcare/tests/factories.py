"""Receipts for tests: issued, stored and linked as the /v1 path and the linker would, one
at a time (:func:`receipt_make`) or by the hundred thousand (:func:`receipts_bulk`)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from django.db import connection
from django.db.models import Field

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


_INSERT_COLUMNS = (
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
    "sequence",
    "prev_hash",
    "chain_hash",
)


def _signed_rows(
    organization: Organization, count: int, key: IssuerKey, start: datetime, model: str
) -> Iterator[tuple[uuid.UUID, str, datetime, str]]:
    """(attestation id, trace id, issue time, signed document) of ``count`` receipts."""
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
        yield attestation, trace_id(n + 1), issued, document


def _rows(
    head: ReceiptChain, count: int, key: IssuerKey, start: datetime, model: str
) -> Iterator[tuple[Any, ...]]:
    """Rows in ``_INSERT_COLUMNS`` order, linked onto ``head`` (moved on in memory; no
    query while they are written, a COPY holds the connection)."""
    organization = head.organization
    for attestation, trace, issued, document in _signed_rows(
        organization, count, key, start, model
    ):
        prev, head.length = head.last_hash, head.length + 1
        head.last_hash = chain_hash(prev, document)
        yield (
            *(organization.pk, attestation, trace, None, model, "BLOCKED", False, issued),
            *(key.key_id, document, head.length, prev, head.last_hash),
        )


def _insert_many(rows: Iterator[tuple[Any, ...]], batch: int = 5_000) -> None:
    """One prepared INSERT per row, in batches (SQLite)."""
    fields = [
        cast(Field, Receipt._meta.get_field("organization" if c == "organization_id" else c))
        for c in _INSERT_COLUMNS
    ]
    sql = (
        f"INSERT INTO healthcare_receipt ({', '.join(_INSERT_COLUMNS)}) "
        f"VALUES ({', '.join(['%s'] * len(_INSERT_COLUMNS))})"
    )
    pending: list[list[Any]] = []
    with connection.cursor() as cursor:
        for row in rows:
            pending.append(
                [
                    field.get_db_prep_save(value, connection)
                    for field, value in zip(fields, row, strict=True)
                ]
            )
            if len(pending) == batch:
                cursor.executemany(sql, pending)
                pending = []
        if pending:
            cursor.executemany(sql, pending)


def _copy(rows: Iterator[tuple[Any, ...]]) -> None:
    """COPY … FROM STDIN (PostgreSQL): the fastest way in."""
    with connection.cursor() as cursor:
        statement = f"COPY healthcare_receipt ({', '.join(_INSERT_COLUMNS)}) FROM STDIN"
        with cursor.cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)


def receipts_bulk(
    organization: Organization,
    count: int,
    *,
    key: IssuerKey | None = None,
    start: datetime | None = None,
    model: str = "gpt-4o-mini",
) -> int:
    """``count`` valid, signed, linked receipts appended to the organisation's chain, a
    millisecond apart from ``start`` (by default so that the last is now), written without
    the ORM (its bulk_create spends most of its time building SQL); the chain's length."""
    key = key or issuer_key()
    start = start or datetime.now(UTC) - timedelta(milliseconds=count)
    head = ReceiptChain.objects.select_related("organization").get_or_create(
        organization=organization
    )[0]
    rows = _rows(head, count, key, start, model)
    if connection.vendor == "postgresql":
        _copy(rows)
    else:
        _insert_many(rows)
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
