"""Reading Pydantic's ``genai-prices`` database: where the data comes from, and each model's
prices turned into the price book's fields (``billing.models.PRICE_FIELDS``).

The bundled data is the default (offline); the latest JSON can be fetched instead. Prices are
per 1M tokens in USD: input, output, cached input (cache reads), cache writes (the default,
shortest-lived write), the long-context tier and the per-request fee. ``Unmappable`` marks an
entry the price book cannot represent. ``billing.price_import`` compares and applies.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, date, datetime, time
from decimal import Decimal

import genai_prices
from django.core.management.base import CommandError
from genai_prices import UpdatePrices
from genai_prices import types as gp

from billing.models import PRICE_FIELDS, Provider

# Our provider → the genai-prices provider id. Self-hosted models have no list price.
SOURCE_PROVIDERS: dict[str, str] = {
    Provider.OPENAI: "openai",
    Provider.ANTHROPIC: "anthropic",
    Provider.GOOGLE: "google",
    Provider.PERPLEXITY: "perplexity",
}
# Price keys of genai-prices that map onto our fields; the rest (audio, image, tool calls,
# one-hour cache writes) are rates Aqta does not bill.
TOKEN_KEYS = {
    "input_mtok": "input_usd_per_mtok",
    "output_mtok": "output_usd_per_mtok",
    "cache_read_mtok": "cached_input_usd_per_mtok",
    "cache_write_mtok": "cache_write_usd_per_mtok",
}
# New-model candidates: plain API ids that answer in text, priced per token.
_PLAIN_ID = re.compile(r"^[a-z0-9][a-z0-9.\-]*$")
_NON_TEXT_OUTPUT = ("output_audio", "output_image", "output_video")
_NON_TOKEN_KEYS = ("_mchars", "_hours", "_gpixels", "_kpages")
PRICE_QUANTUM = Decimal("0.000001")
THOUSAND = Decimal(1_000)

Prices = dict[str, Decimal | int | None]


class Unmappable(ValueError):
    """A source entry whose prices the price book cannot represent."""


def bundled_providers() -> list[gp.Provider]:
    """The data shipped inside the installed genai-prices package (no network)."""
    from genai_prices.data import providers

    return providers


def load_providers(
    *, url: str | None = None, latest: bool = False
) -> tuple[list[gp.Provider], str]:
    """The price data and a description of where it came from.

    Bundled by default; ``latest`` or ``url`` fetch genai-prices' JSON through its own client
    (``UpdatePrices.fetch``). Raises ``CommandError`` (exit status 2) when that fails."""
    version = genai_prices.__version__
    if not (url or latest):
        return bundled_providers(), f"genai-prices {version}, bundled"
    updater = UpdatePrices(url=url) if url else UpdatePrices()
    try:
        snapshot = updater.fetch()
    except Exception as error:  # network, HTTP status or format: one clear message
        raise CommandError(
            f"Could not read price data from {updater.url}: {type(error).__name__}: {error}",
            returncode=2,
        ) from None
    if snapshot is None or not snapshot.providers:
        raise CommandError(f"No price data at {updater.url}.", returncode=2)
    return snapshot.providers, f"genai-prices data from {updater.url}"


def _decimal(value: Decimal | gp.TieredPrices | None) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, gp.TieredPrices):
        value = value.base
    return _quantized(Decimal(value))


def _quantized(value: Decimal) -> Decimal:
    """To the price book's precision (6 places), so that what is stored compares equal."""
    if not value.is_finite() or value < 0:
        raise Unmappable(f"invalid price {value}")
    return value.quantize(PRICE_QUANTUM)


def source_prices(price: gp.ModelPrice) -> tuple[Prices, list[str]]:
    """Our price fields from one genai-prices price set, and notes on what was left out.

    Raises ``Unmappable`` when the price set has no input/output token rates or a tier
    structure the price book has no fields for."""
    values = {key: getattr(price, key, None) for key in (*TOKEN_KEYS, "requests_kcount")}
    if values["input_mtok"] is None or values["output_mtok"] is None:
        raise Unmappable("no input and output token prices")
    prices: Prices = {name: None for name in PRICE_FIELDS}
    notes: list[str] = []
    for key, name in TOKEN_KEYS.items():
        prices[name] = _decimal(values[key])
    threshold: int | None = None
    for key in ("input_mtok", "output_mtok"):
        value = values[key]
        if not isinstance(value, gp.TieredPrices) or not value.tiers:
            continue
        if len(value.tiers) > 1:
            raise Unmappable(f"{len(value.tiers)} price tiers for {key} (one is supported)")
        tier = value.tiers[0]
        if threshold is not None and tier.start != threshold:
            raise Unmappable("input and output tiers start at different prompt sizes")
        threshold = tier.start
        long_field = (
            "long_input_usd_per_mtok" if key == "input_mtok" else "long_output_usd_per_mtok"
        )
        prices[long_field] = _quantized(Decimal(tier.price))
    prices["long_context_threshold_tokens"] = threshold
    for key in ("cache_read_mtok", "cache_write_mtok"):
        cached = values[key]
        if isinstance(cached, gp.TieredPrices) and cached.tiers:
            # The price book has one rate for cached tokens at any prompt size.
            notes.append("long-context cache rates not modelled (base rate used)")
            break
    fee = values["requests_kcount"]
    if fee is not None:
        per_request = fee.base if isinstance(fee, gp.TieredPrices) else fee
        prices["request_fee_low_usd"] = _quantized(Decimal(per_request) / THOUSAND)
    return prices, notes


def _constraint_start(price: gp.ConditionalPrice) -> date | None:
    constraint = price.constraint
    if constraint is None:
        return None
    if isinstance(constraint, gp.StartDateConstraint):
        return constraint.start_date
    raise Unmappable("time-of-day prices are not supported")


def midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def source_schedule(
    model: gp.ModelInfo, now: datetime
) -> tuple[date | None, Prices, list[tuple[date, Prices]], list[str]]:
    """The price valid ``now`` (with the date it started, if the source has one) and the
    changes the source has scheduled after today, each as our price fields."""
    starts: list[date] = []
    if isinstance(model.prices, list):
        starts = sorted({d for p in model.prices if (d := _constraint_start(p)) is not None})
    current, notes = source_prices(model.get_prices(now))
    since = max((d for d in starts if midnight(d) <= now), default=None)
    upcoming: list[tuple[date, Prices]] = []
    previous = current
    for day in starts:
        if midnight(day) <= now:
            continue
        prices, more = source_prices(model.get_prices(midnight(day)))
        notes += [note for note in more if note not in notes]
        if prices != previous:
            upcoming.append((day, prices))
            previous = prices
    return since, current, upcoming, notes


def find_source_provider(providers: Sequence[gp.Provider], provider: str) -> gp.Provider | None:
    """The genai-prices provider listing our ``provider``'s models, if the data has one."""
    source_provider_id = SOURCE_PROVIDERS.get(provider)
    if not source_provider_id:
        return None
    return next((p for p in providers if p.id == source_provider_id), None)


def is_new_model_candidate(model: gp.ModelInfo, now: datetime) -> bool:
    """A model the import may offer to add: a plain API id, not deprecated, answering in text
    and priced per input and output token."""
    if model.deprecated or not _PLAIN_ID.match(model.id):
        return False
    try:
        price = model.get_prices(now)
    except Exception:  # a malformed entry is reported by plan(), never a candidate
        return False
    keys = {k for k, v in price.__dict__.items() if v is not None and not k.startswith("_")}
    if not {"input_mtok", "output_mtok"} <= keys:
        return False
    return not any(k.startswith(_NON_TEXT_OUTPUT) or k.endswith(_NON_TOKEN_KEYS) for k in keys)
