"""Calls to providers: one pooled aiohttp session per worker, bounded retries with jittered
exponential backoff on connect errors, 429 and 5xx, and timeouts that become 504s."""

from __future__ import annotations

import asyncio
import math
import random
import time
from datetime import UTC
from email.utils import parsedate_to_datetime

import aiohttp

from aqta.errors import AqtaError, ErrorCode
from gateway.dataplane.providers.base import UpstreamRequest

RETRYABLE = frozenset({429, 500, 502, 503, 504, 529})
BACKOFF_BASE = 0.2
BACKOFF_CAP = 4.0
RETRY_AFTER_CAP = 10.0


def backoff(attempt: int, retry_after: str | None = None) -> float:
    """Seconds to wait before retry ``attempt`` (0 first): what the provider's Retry-After
    asks, within [0, RETRY_AFTER_CAP], else a jittered exponential backoff."""
    asked = _retry_after_seconds(retry_after) if retry_after else None
    if asked is not None:
        return asked
    return random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt))  # noqa: S311


def _retry_after_seconds(value: str) -> float | None:
    """Retry-After is delay-seconds or an HTTP-date (RFC 9110 §10.2.3); None if neither."""
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:  # "-0000": the date is in GMT all the same
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - time.time()
    if math.isnan(seconds):  # float() reads it, and asyncio.sleep(nan) never returns
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_CAP)


def provider_error(provider: str, message: str, status: int | None = None) -> AqtaError:
    where = f"{provider} answered {status}" if status else f"{provider} could not be reached"
    return AqtaError(f"Upstream provider error: {where}: {message}", code=ErrorCode.PROVIDER_ERROR)


def provider_timeout(provider: str) -> AqtaError:
    return AqtaError(
        f"Upstream provider {provider} did not answer in time.", code=ErrorCode.PROVIDER_TIMEOUT
    )


def session_create(
    *, connect_timeout: float, read_timeout: float, pool: int
) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=pool, ttl_dns_cache=300, keepalive_timeout=60)
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=connect_timeout, sock_read=read_timeout
    )
    return aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=True)


async def open_response(
    session: aiohttp.ClientSession, request: UpstreamRequest, *, provider: str, retries: int
) -> aiohttp.ClientResponse:
    """The upstream response once its headers are in (the body is the caller's to read).

    A retryable status after the last attempt is returned as it is, for the caller to map.
    """
    attempt = 0
    while True:
        retry_after: str | None = None
        failure: AqtaError | None = None
        try:
            response = await session.post(request.url, data=request.body, headers=request.headers)
        except aiohttp.ConnectionTimeoutError:
            failure = provider_error(provider, "connection timed out")
        except (aiohttp.SocketTimeoutError, TimeoutError):
            raise provider_timeout(provider) from None
        except aiohttp.ClientError as error:
            failure = provider_error(provider, type(error).__name__)
        else:
            if response.status not in RETRYABLE or attempt >= retries:
                return response
            retry_after = response.headers.get("retry-after")
            response.release()
        if failure is not None and attempt >= retries:
            raise failure
        await asyncio.sleep(backoff(attempt, retry_after))
        attempt += 1
