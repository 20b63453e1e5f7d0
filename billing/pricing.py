"""Cost of one call, in Decimal, from a price row and the provider's usage.

Pure functions, no database: the data plane calls them with cached price rows, the price
book (``billing.services.call_cost_eur``) with rows it just read. :func:`cost_eur` is the
one place usage becomes EUR.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from aqta import metrics
from aqta.errors import AqtaError, ErrorCode
from billing.models import ModelPrice

logger = logging.getLogger("aqta.billing")

MILLION = Decimal(1_000_000)
# EUR amounts are kept to 1e-8 (a cent-fraction of a single token at the cheapest rates).
EUR_QUANTUM = Decimal("0.00000001")


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage in OpenAI terms: cached and cache-write tokens are part of prompt_tokens."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    search_context_size: str | None = None


def cost_usd(price: ModelPrice, usage: Usage) -> Decimal:
    long_context = (
        price.long_context_threshold_tokens is not None
        and usage.prompt_tokens > price.long_context_threshold_tokens
    )
    input_rate = price.input_usd_per_mtok
    output_rate = price.output_usd_per_mtok
    if long_context:
        # Above the threshold the whole prompt and completion move to the long rates.
        input_rate = price.long_input_usd_per_mtok or input_rate
        output_rate = price.long_output_usd_per_mtok or output_rate
    cached = min(usage.cached_tokens, usage.prompt_tokens)
    written = min(usage.cache_write_tokens, usage.prompt_tokens - cached)
    fresh = usage.prompt_tokens - cached - written
    total = fresh * input_rate + usage.completion_tokens * output_rate
    total += cached * (
        price.cached_input_usd_per_mtok
        if price.cached_input_usd_per_mtok is not None
        else input_rate
    )
    total += written * (
        price.cache_write_usd_per_mtok if price.cache_write_usd_per_mtok is not None else input_rate
    )
    return total / MILLION + request_fee_usd(price, usage.search_context_size)


def request_fee_usd(price: ModelPrice, search_context_size: str | None) -> Decimal:
    fees = {
        "low": price.request_fee_low_usd,
        "medium": price.request_fee_medium_usd,
        "high": price.request_fee_high_usd,
    }
    fee = fees.get(search_context_size or "low") or price.request_fee_low_usd
    return fee or Decimal(0)


def usd_to_eur(amount_usd: Decimal, rate: Decimal) -> Decimal:
    return (amount_usd * rate).quantize(EUR_QUANTUM)


def cost_eur(
    price: ModelPrice | None, rate: Decimal | None, usage: Usage, *, model_id: str, at: float
) -> Decimal:
    """EUR cost of ``usage`` at ``price`` (USD) converted at ``rate`` (USD→EUR).

    A call is never priced at zero by accident: without a price or a rate valid at ``at``
    (a Unix time) this logs an error, counts ``aqta_price_missing_total`` and raises a 503
    (``price_missing`` / ``exchange_rate_missing``). The gateway checks this before it
    forwards a call (``gateway.dataplane.steps.route``), so a client is refused rather than
    served unbilled.
    """
    if price is None or rate is None:
        raise price_missing(model_id, at, rate_missing=rate is None and price is not None)
    return usd_to_eur(cost_usd(price, usage), rate)


def price_missing(model_id: str, at: float, *, rate_missing: bool = False) -> AqtaError:
    """Log, count and describe a call that cannot be priced."""
    when = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M UTC")
    metrics.PRICE_MISSING.labels(model_id, "exchange_rate" if rate_missing else "price").inc()
    if rate_missing:
        logger.error("no USD->EUR exchange rate is valid at %s", when)
        return AqtaError(
            f"No USD→EUR exchange rate is valid at {when}; an operator must add one.",
            code=ErrorCode.EXCHANGE_RATE_MISSING,
        )
    logger.error("no price is valid for %s at %s", model_id, when)
    return AqtaError(
        f"No price is valid for {model_id} at {when}; an operator must add one.",
        code=ErrorCode.PRICE_MISSING,
    )
