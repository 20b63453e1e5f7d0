"""The data plane's one database write: a Healthcare call's receipt, durable before the
gateway answers (docs/receipts.md §6).

On PostgreSQL a few psycopg connections in autocommit insert the rows, batching the
calls that arrive together (no lock: the chain is linked afterwards by
``healthcare.chain``); elsewhere (the embedded SQLite) the ORM writes it from a thread.
The linker runs here too, as a background task, so that a chain is complete within about
a second of its last call.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import psycopg
from django.conf import settings
from django.db import connections
from psycopg import sql
from psycopg.conninfo import make_conninfo

from healthcare.store import COLUMNS, ReceiptValues

logger = logging.getLogger("aqta.receipts")

TABLE = "healthcare_receipt"
# Rendered once (a ``sql.Composed`` would be composed again on every execute); the rows'
# placeholders follow, as many as the batch has.
INSERT_ROWS = (
    sql.SQL("INSERT INTO {table} ({columns}) VALUES ")
    .format(
        table=sql.Identifier(TABLE),
        columns=sql.SQL(", ").join(map(sql.Identifier, COLUMNS)),
    )
    .as_string(None)
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
    """Receipts inserted in batches over a few connections of its own, in autocommit.

    Calls that arrive while a connection is busy committing wait together and go out as
    one multi-row INSERT: one round trip and one commit (one WAL flush) for all of them,
    which is what keeps the cost per receipt low at high concurrency. A batch that fails is
    retried row by row, so one bad row fails only its own call.
    """

    MAX_BATCH = 64

    def __init__(self, conninfo: str, connections: int) -> None:
        self.conninfo = conninfo
        self.connections = connections
        self.pending: list[tuple[ReceiptValues, asyncio.Future[None]]] = []
        self.wakeup = asyncio.Event()
        self.runners: list[asyncio.Task[None]] = []
        self.statements: dict[int, str] = {}

    async def write(self, values: ReceiptValues) -> None:
        if not self.runners:
            self.runners = [asyncio.create_task(self._run()) for _ in range(self.connections)]
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending.append((values, done))
        self.wakeup.set()
        await asyncio.wait_for(asyncio.shield(done), settings.AQTA_RECEIPT_WRITE_TIMEOUT)

    async def aclose(self) -> None:
        for runner in self.runners:
            runner.cancel()
        await asyncio.gather(*self.runners, return_exceptions=True)
        for _, done in self.pending:
            if not done.done():
                done.set_exception(ConnectionError("the receipt writer is closed"))

    def _take(self) -> list[tuple[ReceiptValues, asyncio.Future[None]]]:
        batch, self.pending = self.pending[: self.MAX_BATCH], self.pending[self.MAX_BATCH :]
        if not self.pending:
            self.wakeup.clear()
        return batch

    async def _run(self) -> None:
        conn: psycopg.AsyncConnection[Any] | None = None
        try:
            while True:
                await self.wakeup.wait()
                batch = self._take()
                if batch:
                    conn = await self._write(conn, batch)
        finally:
            if conn is not None:
                await conn.close()

    async def _write(
        self,
        conn: psycopg.AsyncConnection[Any] | None,
        batch: list[tuple[ReceiptValues, asyncio.Future[None]]],
    ) -> psycopg.AsyncConnection[Any] | None:
        """Insert the batch (row by row if it fails); the connection to use next."""
        try:
            if conn is None or conn.closed:
                conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
            await conn.execute(self._statement(len(batch)), _params(batch))
        except (psycopg.Error, OSError) as error:
            if conn is not None and conn.broken:
                await conn.close()
                conn = None
            if len(batch) == 1 or conn is None:
                _settle(batch, error)
                return conn
            for one in batch:
                conn = await self._write(conn, [one])
            return conn
        _settle(batch, None)
        return conn

    def _statement(self, rows: int) -> str:
        statement = self.statements.get(rows)
        if statement is None:
            row = "(" + ", ".join(["%s"] * len(COLUMNS)) + ")"
            statement = INSERT_ROWS + ", ".join([row] * rows)
            self.statements[rows] = statement
        return statement


def _params(batch: list[tuple[ReceiptValues, asyncio.Future[None]]]) -> list[object]:
    return [value for values, _ in batch for value in values.as_tuple()]


def _settle(
    batch: list[tuple[ReceiptValues, asyncio.Future[None]]], error: Exception | None
) -> None:
    for _, done in batch:
        if done.done():  # its caller gave up waiting
            continue
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)


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
