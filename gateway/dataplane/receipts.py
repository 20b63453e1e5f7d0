"""The data plane's one database write: a Healthcare call's receipt, durable before the
gateway answers (docs/receipts.md §6).

On PostgreSQL a small pool of psycopg connections in autocommit inserts the row (one
round trip, no lock: the chain is linked afterwards by ``healthcare.chain``); elsewhere
(the embedded SQLite) the ORM writes it from a thread. The linker runs here too, as a
background task, so that a chain is complete within about a second of its last call.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from django.conf import settings
from django.db import connections
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg_pool import AsyncConnectionPool

from healthcare.store import COLUMNS, ReceiptValues

logger = logging.getLogger("aqta.receipts")

TABLE = "healthcare_receipt"
INSERT = sql.SQL("INSERT INTO {table} ({columns}) VALUES ({values})").format(
    table=sql.Identifier(TABLE),
    columns=sql.SQL(", ").join(map(sql.Identifier, COLUMNS)),
    values=sql.SQL(", ").join(sql.Placeholder() * len(COLUMNS)),
)
LINK_INTERVAL_SECONDS = 0.5


class ReceiptWriter(Protocol):
    async def write(self, values: ReceiptValues) -> None: ...
    async def aclose(self) -> None: ...


class OrmReceiptWriter:
    """Through Django's ORM, from a thread (SQLite, and whatever is not PostgreSQL)."""

    async def write(self, values: ReceiptValues) -> None:
        await asyncio.to_thread(_store, values)

    async def aclose(self) -> None:
        return None


def _store(values: ReceiptValues) -> None:
    from healthcare.store import receipt_store

    try:
        receipt_store(values)
    finally:
        connections.close_all()  # this thread's connection: the pool's threads are reused


class PgReceiptWriter:
    """Autocommit inserts over a pool of its own (opened on first use)."""

    def __init__(self, conninfo: str, max_size: int) -> None:
        self.pool = AsyncConnectionPool(
            conninfo,
            min_size=1,
            max_size=max_size,
            open=False,
            kwargs={"autocommit": True},
            timeout=settings.AQTA_RECEIPT_WRITE_TIMEOUT,
        )
        self._opened = False

    async def write(self, values: ReceiptValues) -> None:
        if not self._opened:
            await self.pool.open(wait=False)
            self._opened = True
        async with self.pool.connection() as conn:
            await conn.execute(INSERT, values.as_tuple())

    async def aclose(self) -> None:
        if self._opened:
            await self.pool.close()


def _conninfo(db: dict[str, Any]) -> str:
    options = {k: v for k, v in (db.get("OPTIONS") or {}).items() if isinstance(v, str | int)}
    params = {
        "dbname": db.get("NAME"),
        "user": db.get("USER") or None,
        "password": db.get("PASSWORD") or None,
        "host": db.get("HOST") or None,
        "port": db.get("PORT") or None,
        "application_name": "aqta-receipts",
        **options,
    }
    return make_conninfo(**{k: str(v) for k, v in params.items() if v is not None})


def writer_create() -> ReceiptWriter:
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("postgresql"):
        return PgReceiptWriter(_conninfo(db), settings.AQTA_RECEIPT_POOL_SIZE)
    return OrmReceiptWriter()


async def link_forever(stop: asyncio.Event) -> None:
    """Link pending receipts into their chains, about twice a second, from one thread of
    its own (which keeps its database connection between passes)."""
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="aqta-receipt-link") as thread:
        while not stop.is_set():
            try:
                await loop.run_in_executor(thread, _link_all)
            except Exception:
                logger.exception("linking receipts failed; retrying")
            try:
                await asyncio.wait_for(stop.wait(), LINK_INTERVAL_SECONDS)
            except TimeoutError:
                pass
        await loop.run_in_executor(thread, connections.close_all)


def _link_all() -> None:
    from healthcare.chain import chain_link_all

    for connection in connections.all(initialized_only=True):
        connection.close_if_unusable_or_obsolete()
    chain_link_all()


def key_register() -> None:
    """List the process's issuer key (retiring the one before it), if one is configured."""
    from django.core.exceptions import ImproperlyConfigured

    from healthcare import keyring

    try:
        keyring.register()
    except ImproperlyConfigured:
        return  # no key: Healthcare calls are refused until one is configured
    except Exception:
        logger.exception("the receipt issuer key could not be listed; retried on first use")
    finally:
        connections.close_all()
