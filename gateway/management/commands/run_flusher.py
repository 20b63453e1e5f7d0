"""Write buffered traces and usage from the Redis stream to the database.

Run one or more of these beside the server workers and set ``AQTA_FLUSH_IN_WORKERS=false``:
the database writes then cost the request-serving processes nothing. It also links
Healthcare receipts into their chains (the workers do that too when they flush). Flushers share a
consumer group, so any number can run, on any host; entries left pending by one that
died are claimed by another.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from aqta import redis as aqta_redis
from gateway.dataplane.buffer import RedisBuffer
from gateway.dataplane.receipts import link_forever


class Command(BaseCommand):
    help = "Flush gateway traces from Redis to the database until SIGTERM/SIGINT."

    def handle(self, *args: Any, **options: Any) -> None:
        if not aqta_redis.enabled():
            raise CommandError("run_flusher needs REDIS_URL (embedded workers flush themselves).")
        asyncio.run(self._run())

    async def _run(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        client = aqta_redis.async_client()
        reader = aqta_redis.async_client(socket_timeout=5)
        buffer = RedisBuffer(client, reader)
        self.stderr.write("trace flusher running")
        linker = asyncio.create_task(link_forever(stop))  # Healthcare receipts' chains
        try:
            await buffer.run(stop)  # flushes once more when stopped
        finally:
            stop.set()  # also when the buffer's run ended on its own: the linker stops too
            await asyncio.gather(linker, return_exceptions=True)
            # As the workers shut down (Runtime.close): the buffer closes its own reader,
            # then the client it was lent.
            await buffer.aclose()
            await client.aclose()
        self.stderr.write("trace flusher stopped")
