"""Compare the price book with Pydantic's ``genai-prices`` database and apply the differences.

``plan()`` reads the catalogue and the source and returns what differs; ``apply()`` writes
the differences as new price periods through ``model_price_set``, one model per transaction,
so history is never rewritten and one bad entry never blocks the others.

What is imported, per 1M tokens in USD: input, output, cached input (cache reads), cache
writes (the default, shortest-lived write), the long-context tier (one threshold above which
the whole call moves to the long input/output rates) and the per-request fee; the context
window. genai-prices has no output limit, audio/image rates or tool fees that Aqta bills, so
those are left as they are.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal

import genai_prices
from django.core.management.base import CommandError
from django.db import transaction
from genai_prices import UpdatePrices
from genai_prices import types as gp

from aqta.errors import AqtaError
from billing.models import PRICE_FIELDS, LanguageModel, ModelPrice, Provider
from billing.services import model_price_set

# Our provider → the genai-prices provider id. Self-hosted models have no list price.
SOURCE_PROVIDERS: dict[str, str] = {
    Provider.OPENAI: "openai",
    Provider.ANTHROPIC: "anthropic",
    Provider.GOOGLE: "google",
    Provider.PERPLEXITY: "perplexity",
}
FIELD_LABELS = {
    "input_usd_per_mtok": "input",
    "output_usd_per_mtok": "output",
    "cached_input_usd_per_mtok": "cached input",
    "cache_write_usd_per_mtok": "cache write",
    "long_context_threshold_tokens": "long-context above",
    "long_input_usd_per_mtok": "long input",
    "long_output_usd_per_mtok": "long output",
    "request_fee_low_usd": "request fee",
    "request_fee_medium_usd": "request fee (medium)",
    "request_fee_high_usd": "request fee (high)",
    "context_window": "context window",
}
FEE_FIELDS = ("request_fee_low_usd", "request_fee_medium_usd", "request_fee_high_usd")
# Price keys of genai-prices that map onto our fields; the rest (audio, image, tool calls,
# one-hour cache writes) are rates Aqta does not bill.
TOKEN_KEYS = {
    "input_mtok": "input_usd_per_mtok",
    "output_mtok": "output_usd_per_mtok",
    "cache_read_mtok": "cached_input_usd_per_mtok",
    "cache_write_mtok": "cache_write_usd_per_mtok",
}
# A model added by the import is cost-effective (callable by tiers limited to cost-effective
# models, once an operator activates it) only if both list rates are at or below these: the
# rates of the seeded cost-effective class.
COST_EFFECTIVE_MAX_INPUT = Decimal("1.00")
COST_EFFECTIVE_MAX_OUTPUT = Decimal("2.00")
# New-model candidates: plain API ids that answer in text, priced per token.
_PLAIN_ID = re.compile(r"^[a-z0-9][a-z0-9.\-]*$")
_NON_TEXT_OUTPUT = ("output_audio", "output_image", "output_video")
_NON_TOKEN_KEYS = ("_mchars", "_hours", "_gpixels", "_kpages")
PRICE_QUANTUM = Decimal("0.000001")
THOUSAND = Decimal(1_000)

Prices = dict[str, Decimal | int | None]


class Unmappable(ValueError):
    """A source entry whose prices the price book cannot represent."""


@dataclass
class FieldChange:
    field: str
    current: Decimal | int | None
    source: Decimal | int | None


@dataclass
class PeriodChange:
    """A new price period: ``starts`` is None for "from the moment the import applies"."""

    starts: datetime | None
    prices: Prices
    changes: list[FieldChange]
    source_since: date | None = None


@dataclass
class ModelDiff:
    model: LanguageModel
    source_id: str
    periods: list[PeriodChange] = field(default_factory=list)
    context_window: FieldChange | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.periods or self.context_window)


@dataclass
class NewModel:
    provider: str
    model_id: str
    display_name: str
    context_window: int | None
    cost_effective: bool
    periods: list[PeriodChange]
    notes: list[str] = field(default_factory=list)


@dataclass
class Skipped:
    """An entry left out, with why: not in the source, unmappable, or failed to apply."""

    provider: str
    model_id: str
    reason: str


@dataclass
class Plan:
    now: datetime
    diffs: list[ModelDiff] = field(default_factory=list)
    new_models: list[NewModel] = field(default_factory=list)
    not_in_source: list[Skipped] = field(default_factory=list)
    unmappable: list[Skipped] = field(default_factory=list)
    unchanged: int = 0

    @property
    def changed(self) -> list[ModelDiff]:
        return [diff for diff in self.diffs if diff.changed]

    def differences(self, *, with_new_models: bool) -> int:
        return len(self.changed) + (len(self.new_models) if with_new_models else 0)


@dataclass
class Outcome:
    applied: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    failed: list[Skipped] = field(default_factory=list)


# --- reading the source -------------------------------------------------------------------


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
        if isinstance(values[key], gp.TieredPrices) and values[key].tiers:
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


def _midnight(day: date) -> datetime:
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
    since = max((d for d in starts if _midnight(d) <= now), default=None)
    upcoming: list[tuple[date, Prices]] = []
    previous = current
    for day in starts:
        if _midnight(day) <= now:
            continue
        prices, more = source_prices(model.get_prices(_midnight(day)))
        notes += [note for note in more if note not in notes]
        if prices != previous:
            upcoming.append((day, prices))
            previous = prices
    return since, current, upcoming, notes


# --- comparing -----------------------------------------------------------------------------


def _recorded(price: ModelPrice | None) -> Prices:
    if price is None:
        return {name: None for name in PRICE_FIELDS}
    return {name: getattr(price, name) for name in PRICE_FIELDS}


def _same(a: Decimal | int | None, b: Decimal | int | None) -> bool:
    if a is None or b is None:
        return a is b
    return Decimal(a) == Decimal(b)


def _merge_fees(target: Prices, recorded: Prices, notes: list[str]) -> None:
    """genai-prices has one per-request fee (for Perplexity: the highest search-context size).
    Fees recorded per size are kept while the source's fee equals the highest of them, and
    never guessed when it differs: that needs an operator."""
    sized = recorded["request_fee_medium_usd"] is not None or (
        recorded["request_fee_high_usd"] is not None
    )
    if not sized:
        return
    highest = max(Decimal(recorded[name]) for name in FEE_FIELDS if recorded[name] is not None)
    source_fee = target["request_fee_low_usd"]
    if source_fee is not None and Decimal(source_fee) != highest:
        notes.append(
            f"request fee {fmt(source_fee)} in the source, {fmt(highest)} recorded as the "
            "highest per-size fee: not applied, change it in the admin"
        )
    for name in FEE_FIELDS:
        target[name] = recorded[name]


def _field_changes(recorded: Prices, target: Prices) -> list[FieldChange]:
    return [
        FieldChange(name, recorded[name], target[name])
        for name in PRICE_FIELDS
        if not _same(recorded[name], target[name])
    ]


def _periods_for(
    model: LanguageModel, source: gp.ModelInfo, now: datetime, notes: list[str]
) -> list[PeriodChange]:
    since, current, upcoming, more = source_schedule(source, now)
    notes += more
    rows = list(model.prices.order_by("valid_from"))
    at_now = next(
        (r for r in rows if r.valid_from <= now and (r.valid_to is None or now < r.valid_to)),
        None,
    )
    periods: list[PeriodChange] = []
    recorded = _recorded(at_now)
    _merge_fees(current, recorded, notes)
    changes = _field_changes(recorded, current)
    if changes:
        periods.append(PeriodChange(None, current, changes, source_since=since))
    previous = current
    later = {r.valid_from: r for r in rows if r.valid_from > now}
    for day, prices in upcoming:
        _merge_fees(prices, _recorded(at_now), [])
        row = later.get(_midnight(day))
        if row is not None and not _field_changes(_recorded(row), prices):
            previous = prices
            continue
        periods.append(
            PeriodChange(
                _midnight(day), prices, _field_changes(_recorded(row) if row else previous, prices)
            )
        )
        previous = prices
    scheduled = {_midnight(day) for day, _ in upcoming}
    for starts in sorted(set(later) - scheduled):
        notes.append(f"price period from {starts:%Y-%m-%d} is not in the source (kept)")
    return periods


def _source_provider(providers: Sequence[gp.Provider], provider_id: str) -> gp.Provider | None:
    return next((p for p in providers if p.id == provider_id), None)


def _matches(value: str, patterns: Sequence[str]) -> bool:
    return not patterns or any(fnmatch.fnmatchcase(value, p) for p in patterns)


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


def is_cost_effective(prices: Prices) -> bool:
    input_rate, output_rate = prices["input_usd_per_mtok"], prices["output_usd_per_mtok"]
    return (
        input_rate is not None
        and output_rate is not None
        and Decimal(input_rate) <= COST_EFFECTIVE_MAX_INPUT
        and Decimal(output_rate) <= COST_EFFECTIVE_MAX_OUTPUT
    )


def plan(
    providers: Sequence[gp.Provider],
    *,
    now: datetime,
    provider_filter: Iterable[str] = (),
    model_patterns: Sequence[str] = (),
) -> Plan:
    """What differs between the catalogue and ``providers`` (genai-prices data) at ``now``."""
    wanted = set(provider_filter) or set(Provider.values)
    result = Plan(now=now)
    mapped: dict[str, set[str]] = {}
    catalogue = LanguageModel.objects.filter(provider__in=wanted).order_by("provider", "model_id")
    for model in catalogue:
        if not _matches(model.model_id, model_patterns):
            continue
        source_provider_id = SOURCE_PROVIDERS.get(model.provider)
        source_provider = (
            _source_provider(providers, source_provider_id) if source_provider_id else None
        )
        if source_provider is None:
            result.not_in_source.append(
                Skipped(model.provider, model.model_id, "no list prices for this provider")
            )
            continue
        refs = dict.fromkeys([model.upstream_model_id or model.model_id, model.model_id])
        source = next((m for ref in refs if (m := source_provider.find_model(ref))), None)
        if source is None:
            result.not_in_source.append(
                Skipped(model.provider, model.model_id, "not in the price data")
            )
            continue
        mapped.setdefault(source_provider.id, set()).add(source.id)
        try:
            diff = ModelDiff(model=model, source_id=source.id)
            diff.periods = _periods_for(model, source, now, diff.notes)
            if source.context_window and source.context_window != model.context_window:
                diff.context_window = FieldChange(
                    "context_window", model.context_window, source.context_window
                )
        except Exception as error:  # one bad entry is reported and never blocks the others
            result.unmappable.append(Skipped(model.provider, model.model_id, _reason(error)))
            continue
        result.diffs.append(diff)
        if not diff.changed:
            result.unchanged += 1
    for provider in sorted(wanted):
        source_provider_id = SOURCE_PROVIDERS.get(provider)
        source_provider = (
            _source_provider(providers, source_provider_id) if source_provider_id else None
        )
        if source_provider is None:
            continue
        known = mapped.get(source_provider.id, set()) | set(
            LanguageModel.objects.filter(provider=provider).values_list("model_id", flat=True)
        )
        for source in source_provider.models:
            if source.id in known or not _matches(source.id, model_patterns):
                continue
            if not is_new_model_candidate(source, now):
                continue
            # The source lists models other providers host too (Claude on Vertex): only the
            # provider's own models, by genai-prices' own rule for recognising them.
            own = source_provider.model_match
            if own is not None and not own.is_match(source.id):
                continue
            if any(source.is_match(ref) for ref in known):
                continue
            try:
                _, current, upcoming, notes = source_schedule(source, now)
            except Exception as error:
                result.unmappable.append(Skipped(provider, source.id, _reason(error)))
                continue
            periods = [PeriodChange(None, current, _field_changes(_recorded(None), current))]
            periods += [PeriodChange(_midnight(day), prices, []) for day, prices in upcoming]
            result.new_models.append(
                NewModel(
                    provider=provider,
                    model_id=source.id,
                    display_name=source.name or "",
                    context_window=source.context_window,
                    cost_effective=is_cost_effective(current),
                    periods=periods,
                    notes=notes,
                )
            )
    return result


def _reason(error: Exception) -> str:
    if isinstance(error, Unmappable | AqtaError):
        return str(error)
    return f"unreadable entry ({type(error).__name__}: {error})"


# --- applying ------------------------------------------------------------------------------


def _write_periods(model: LanguageModel, periods: list[PeriodChange], now: datetime) -> None:
    for period in periods:
        model_price_set(model=model, valid_from=period.starts or now, **period.prices)


def apply(plan_: Plan, *, add_models: bool) -> Outcome:
    """Write ``plan_``: new periods for changed prices (from ``plan_.now``, or the date the
    source has scheduled), context windows, and with ``add_models`` the new models, inactive."""
    outcome = Outcome()
    for diff in plan_.changed:
        try:
            with transaction.atomic():
                _write_periods(diff.model, diff.periods, plan_.now)
                if diff.context_window is not None:
                    diff.model.context_window = diff.context_window.source
                    diff.model.save(update_fields=["context_window"])
        except Exception as error:  # refused (history) or broken: reported, the rest goes on
            outcome.failed.append(Skipped(diff.model.provider, diff.model.model_id, _reason(error)))
            continue
        outcome.applied.append(diff.model.model_id)
    if not add_models:
        return outcome
    for new in plan_.new_models:
        try:
            with transaction.atomic():
                model = LanguageModel.objects.create(
                    provider=new.provider,
                    model_id=new.model_id,
                    display_name=new.display_name,
                    context_window=new.context_window,
                    cost_effective=new.cost_effective,
                    # Callable by nobody until an operator has looked at it and activated it.
                    is_active=False,
                )
                _write_periods(model, new.periods, plan_.now)
        except Exception as error:
            outcome.failed.append(Skipped(new.provider, new.model_id, _reason(error)))
            continue
        outcome.added.append(new.model_id)
    return outcome


def fmt(value: Decimal | int | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    text = format(Decimal(value).normalize(), "f")
    return text
