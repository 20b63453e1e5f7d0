"""Two ways to chain receipts on the /v1 path, measured side by side on PostgreSQL.

1. **lock**: each call links its own receipt: ``SELECT … FOR UPDATE`` on the
   organisation's chain head, INSERT the row with its ``prev_hash``/``chain_hash``, UPDATE
   the head, COMMIT. Calls of one organisation queue on the head's row lock, which is
   held until the commit's WAL flush.
2. **insert**: the call only inserts its row (no lock; what the gateway does), and a
   linker chains the organisation's pending rows in order afterwards
   (``healthcare.chain``), here once for all of them at the end.

    .venv/bin/python -m bench.receipt_chain [--calls 2000] [--clients 10]

Needs PostgreSQL at 127.0.0.1:5432 (trust auth, user ``postgres``); it creates and drops
the database ``aqta_bench_chain``. Prints calls per second, p50/p99 latency per call and
the client's CPU per call for each design.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import statistics
import time
import uuid

import psycopg

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
DB = "aqta_bench_chain"
DSN = f"postgresql://postgres@127.0.0.1:5432/{DB}"
DOCUMENT = '{"attestation_id":"%s","cost_prevented_eur":0,"model":"gpt-4o-mini"}' + "x" * 400
SCHEMA = """
CREATE TABLE head (org uuid PRIMARY KEY, length bigint NOT NULL, last_hash text NOT NULL);
CREATE TABLE receipt (
    id bigserial PRIMARY KEY, org uuid NOT NULL, document text NOT NULL,
    sequence bigint, prev_hash text NOT NULL DEFAULT '', chain_hash text NOT NULL DEFAULT '',
    UNIQUE (org, sequence)
);
"""


def _hash(prev: str, document: str) -> str:
    return hashlib.sha256(prev.encode() + document.encode()).hexdigest()


async def _lock_one(conn: psycopg.AsyncConnection, org: uuid.UUID) -> None:
    document = DOCUMENT % uuid.uuid4()
    async with conn.transaction():
        cur = await conn.execute(
            "SELECT length, last_hash FROM head WHERE org = %s FOR UPDATE", (org,)
        )
        row = await cur.fetchone()
        assert row is not None
        length, prev = row
        digest = _hash(prev, document)
        await conn.execute(
            "INSERT INTO receipt (org, document, sequence, prev_hash, chain_hash) "
            "VALUES (%s, %s, %s, %s, %s)",
            (org, document, length + 1, prev, digest),
        )
        await conn.execute(
            "UPDATE head SET length = %s, last_hash = %s WHERE org = %s", (length + 1, digest, org)
        )


async def _insert_one(conn: psycopg.AsyncConnection, org: uuid.UUID) -> None:
    await conn.execute(
        "INSERT INTO receipt (org, document) VALUES (%s, %s)", (org, DOCUMENT % uuid.uuid4())
    )


async def _link_all(org: uuid.UUID) -> float:
    """The linker's pass over every pending row: seconds taken."""
    started = time.perf_counter()
    async with await psycopg.AsyncConnection.connect(DSN) as conn:
        async with conn.transaction():
            cur = await conn.execute(
                "SELECT length, last_hash FROM head WHERE org = %s FOR UPDATE", (org,)
            )
            row = await cur.fetchone()
            assert row is not None
            length, prev = row
            cur = await conn.execute(
                "SELECT id, document FROM receipt WHERE org = %s AND sequence IS NULL ORDER BY id",
                (org,),
            )
            updates = []
            for rid, document in await cur.fetchall():
                length += 1
                digest = _hash(prev, document)
                updates.append((length, prev, digest, rid))
                prev = digest
            async with conn.cursor() as cursor:
                await cursor.executemany(
                    "UPDATE receipt SET sequence = %s, prev_hash = %s, chain_hash = %s "
                    "WHERE id = %s",
                    updates,
                )
            await conn.execute(
                "UPDATE head SET length = %s, last_hash = %s WHERE org = %s", (length, prev, org)
            )
    return time.perf_counter() - started


async def _run(design: str, calls: int, clients: int) -> dict[str, float]:
    org = uuid.uuid4()
    async with await psycopg.AsyncConnection.connect(DSN, autocommit=True) as conn:
        await conn.execute("INSERT INTO head VALUES (%s, 0, %s)", (org, "0" * 64))
    one = _lock_one if design == "lock" else _insert_one
    latencies: list[float] = []
    remaining = calls

    async def client() -> None:
        nonlocal remaining
        async with await psycopg.AsyncConnection.connect(DSN, autocommit=True) as conn:
            while remaining > 0:
                remaining -= 1
                started = time.perf_counter()
                await one(conn, org)
                latencies.append(time.perf_counter() - started)

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    link = await _link_all(org) if design == "insert" else 0.0
    latencies.sort()
    return {
        "calls/s": calls / wall,
        "p50 ms": statistics.median(latencies) * 1000,
        "p99 ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "client CPU us/call": cpu / calls * 1e6,
        "linker s (all rows)": link,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.receipt_chain", description=__doc__)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=10)
    args = parser.parse_args()
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {DB}")
    try:
        with psycopg.connect(DSN, autocommit=True) as conn:
            conn.execute(SCHEMA)
        print(f"{args.calls} calls of one organisation, {args.clients} clients, pid {os.getpid()}")
        for design in ("lock", "insert"):
            result = asyncio.run(_run(design, args.calls, args.clients))
            cells = ", ".join(f"{k} {v:,.2f}" for k, v in result.items())
            print(f"  {design}: {cells}")
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")


if __name__ == "__main__":
    main()
