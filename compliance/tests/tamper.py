"""What an attacker with write access to the database does, for the tamper tests.

Everything goes through raw SQL, as it would from ``psql``; on PostgreSQL the
append-only triggers are switched off first (``ALTER TABLE … DISABLE TRIGGER USER``, what
a table owner can do), inside the test's transaction.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest
from django.db import connection

AUDIT_TABLES = ("compliance_auditevent", "compliance_auditchain", "compliance_chaincheckpoint")
RECEIPT_TABLES = ("healthcare_receipt",)

postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="PostgreSQL triggers: run with DATABASE_URL=postgres://…",
)


def sql(statement: str, params: Sequence[Any] = ()) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


@contextlib.contextmanager
def triggers_off(tables: Sequence[str] = AUDIT_TABLES) -> Iterator[None]:
    if connection.vendor != "postgresql":
        yield
        return
    # Django's foreign keys are deferred: their pending checks would block ALTER TABLE.
    sql("SET CONSTRAINTS ALL IMMEDIATE")
    for table in tables:
        sql(f"ALTER TABLE {table} DISABLE TRIGGER USER")
    try:
        yield
    finally:
        sql("SET CONSTRAINTS ALL IMMEDIATE")
        for table in tables:
            sql(f"ALTER TABLE {table} ENABLE TRIGGER USER")
        sql("SET CONSTRAINTS ALL DEFERRED")


def uuid_value(value: Any) -> str:
    """A UUID as the database stores it (SQLite: 32 hex digits, no hyphens)."""
    return value.hex if connection.vendor == "sqlite" else str(value)


def _chain_id(scope: str) -> int:
    return int(sql("SELECT id FROM compliance_auditchain WHERE scope = %s", [scope])[0][0])


def edit_event(scope: str, sequence: int, **columns: Any) -> None:
    """Change an event's columns in place (``data`` as a dict)."""
    sets, values = [], []
    for name, value in columns.items():
        sets.append(f"{name} = %s")
        values.append(json.dumps(value) if name == "data" else value)
    with triggers_off():
        sql(
            f"UPDATE compliance_auditevent SET {', '.join(sets)} "
            "WHERE chain_id = %s AND sequence = %s",
            [*values, _chain_id(scope), sequence],
        )


def delete_events(scope: str, *, from_sequence: int) -> None:
    """Delete the chain's events from ``from_sequence`` on and set its head back, as if
    they had never been recorded."""
    chain_id = _chain_id(scope)
    with triggers_off():
        sql(
            "DELETE FROM compliance_auditevent WHERE chain_id = %s AND sequence >= %s",
            [chain_id, from_sequence],
        )
        last = sql(
            "SELECT hash FROM compliance_auditevent WHERE chain_id = %s AND sequence = %s",
            [chain_id, from_sequence - 1],
        )
        sql(
            "UPDATE compliance_auditchain SET length = %s, last_hash = %s WHERE id = %s",
            [from_sequence - 1, last[0][0] if last else "0" * 64, chain_id],
        )


def delete_chain(scope: str) -> None:
    """The whole chain, events and head."""
    chain_id = _chain_id(scope)
    with triggers_off():
        sql("DELETE FROM compliance_auditevent WHERE chain_id = %s", [chain_id])
        sql("DELETE FROM compliance_auditchain WHERE id = %s", [chain_id])


def _public_hash(row: Mapping[str, Any], scope: str, prev_hash: str) -> str:
    """The published algorithm (docs/audit.md), computed from the raw row."""
    created = row["created_at"]
    payload = {
        "scope": scope,
        "sequence": row["sequence"],
        "organization": None if scope == "global" else scope,
        "actor": row["actor_label"],
        "action": row["action"],
        "target": row["target"],
        "ip": row["ip"],
        "data": row["data"],
        "created_at": created.isoformat(),
    }
    body = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(prev_hash.encode() + body).hexdigest()


def rehash_chain(scope: str) -> None:
    """Recompute every hash of the chain from its base and fix the head: what an attacker
    does after an edit so that the links hold again."""
    from compliance.models import AuditChain, AuditEvent

    chain = AuditChain.objects.get(scope=scope)
    prev = chain.base_hash
    rows = AuditEvent.objects.filter(chain=chain, sequence__gt=chain.base_sequence)
    with triggers_off():
        for row in rows.order_by("sequence").values():
            new = _public_hash(row, scope, prev)
            sql(
                "UPDATE compliance_auditevent SET prev_hash = %s, hash = %s WHERE id = %s",
                [prev, new, row["id"]],
            )
            prev = new
        sql("UPDATE compliance_auditchain SET last_hash = %s WHERE id = %s", [prev, chain.pk])
