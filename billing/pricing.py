"""Cost of one call, in Decimal, from a price row and the provider's usage.

Pure functions, no database: the data plane calls them with cached price rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from billing.models import ModelPrice

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
