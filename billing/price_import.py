"""Compare the price book with Pydantic's ``genai-prices`` database and apply the differences.

``plan()`` reads the catalogue and the source (as ``billing.price_source`` maps it) and
returns what differs; ``apply()`` writes the differences as new price periods through
``model_price_set``, one model per transaction, so history is never rewritten and one bad
entry never blocks the others.

What is imported, per 1M tokens in USD: input, output, cached input (cache reads), cache
writes (the default, shortest-lived write), the long-context tier (one threshold above which
the whole call moves to the long input/output rates) and the per-request fee; the context
window. genai-prices has no output limit, audio/image rates or tool fees that Aqta bills, so
those are left as they are.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Generic, TypeVar

from django.db import transaction
from genai_prices import types as gp

from aqta.errors import AqtaError
from billing.models import PRICE_FIELDS, LanguageModel, ModelPrice, Provider
from billing.price_source import (
    Prices,
    Unmappable,
    find_source_provider,
    is_new_model_candidate,
    midnight,
    source_schedule,
)
from billing.services import model_price_set

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
# A model added by the import is cost-effective (callable by tiers limited to cost-effective
# models, once an operator activates it) only if both list rates are at or below these: the
# rates of the seeded cost-effective class.
COST_EFFECTIVE_MAX_INPUT = Decimal("1.00")
COST_EFFECTIVE_MAX_OUTPUT = Decimal("2.00")


V = TypeVar("V")


@dataclass
class FieldChange(Generic[V]):
    field: str
    current: V | None
    source: V | None


@dataclass
class PeriodChange:
    """A new price period: ``starts`` is None for "from the moment the import applies"."""

    starts: datetime | None
    prices: Prices
    changes: list[FieldChange[Decimal | int]]
    source_since: date | None = None


@dataclass
class ModelDiff:
    model: LanguageModel
    source_id: str
    periods: list[PeriodChange] = field(default_factory=list)
    context_window: FieldChange[int] | None = None
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
    fees = [recorded[name] for name in FEE_FIELDS]
    highest = max(Decimal(fee) for fee in fees if fee is not None)
    source_fee = target["request_fee_low_usd"]
    if source_fee is not None and Decimal(source_fee) != highest:
        notes.append(
            f"request fee {fmt(source_fee)} in the source, {fmt(highest)} recorded as the "
            "highest per-size fee: not applied, change it in the admin"
        )
    for name in FEE_FIELDS:
        target[name] = recorded[name]


def _field_changes(recorded: Prices, target: Prices) -> list[FieldChange[Decimal | int]]:
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
        row = later.get(midnight(day))
        if row is not None and not _field_changes(_recorded(row), prices):
            previous = prices
            continue
        periods.append(
            PeriodChange(
                midnight(day), prices, _field_changes(_recorded(row) if row else previous, prices)
            )
        )
        previous = prices
    scheduled = {midnight(day) for day, _ in upcoming}
    for starts in sorted(set(later) - scheduled):
        notes.append(f"price period from {starts:%Y-%m-%d} is not in the source (kept)")
    return periods


def _matches(value: str, patterns: Sequence[str]) -> bool:
    return not patterns or any(fnmatch.fnmatchcase(value, p) for p in patterns)


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
    mapped: dict[str, set[str]] = {}  # source provider id -> source model ids in the catalogue
    catalogue = LanguageModel.objects.filter(provider__in=wanted).order_by("provider", "model_id")
    for model in catalogue:
        if _matches(model.model_id, model_patterns):
            _plan_model(result, mapped, model, providers, now)
    for provider in sorted(wanted):
        source_provider = find_source_provider(providers, provider)
        if source_provider is None:
            continue
        known = mapped.get(source_provider.id, set()) | set(
            LanguageModel.objects.filter(provider=provider).values_list("model_id", flat=True)
        )
        for source in source_provider.models:
            if _is_new_model(source, source_provider, known, now, model_patterns):
                _plan_new_model(result, provider, source, now)
    return result


def _plan_model(
    result: Plan,
    mapped: dict[str, set[str]],
    model: LanguageModel,
    providers: Sequence[gp.Provider],
    now: datetime,
) -> None:
    """Add to ``result`` how a catalogue model differs from its source entry, or why it has
    none; record the entry in ``mapped``."""
    source_provider = find_source_provider(providers, model.provider)
    if source_provider is None:
        result.not_in_source.append(
            Skipped(model.provider, model.model_id, "no list prices for this provider")
        )
        return
    refs = dict.fromkeys([model.upstream_model_id or model.model_id, model.model_id])
    source = next((m for ref in refs if (m := source_provider.find_model(ref))), None)
    if source is None:
        result.not_in_source.append(
            Skipped(model.provider, model.model_id, "not in the price data")
        )
        return
    mapped.setdefault(source_provider.id, set()).add(source.id)
    try:
        diff = _model_diff(model, source, now)
    except Exception as error:  # one bad entry is reported and never blocks the others
        result.unmappable.append(Skipped(model.provider, model.model_id, _reason(error)))
        return
    result.diffs.append(diff)
    if not diff.changed:
        result.unchanged += 1


def _model_diff(model: LanguageModel, source: gp.ModelInfo, now: datetime) -> ModelDiff:
    diff = ModelDiff(model=model, source_id=source.id)
    diff.periods = _periods_for(model, source, now, diff.notes)
    if source.context_window and source.context_window != model.context_window:
        diff.context_window = FieldChange(
            "context_window", model.context_window, source.context_window
        )
    return diff


def _is_new_model(
    source: gp.ModelInfo,
    source_provider: gp.Provider,
    known: set[str],
    now: datetime,
    model_patterns: Sequence[str],
) -> bool:
    """Whether ``source`` is a model of the provider's own the catalogue lacks, chosen by
    ``model_patterns`` and recent enough to offer."""
    if source.id in known or not _matches(source.id, model_patterns):
        return False
    if not is_new_model_candidate(source, now):
        return False
    # The source lists models other providers host too (Claude on Vertex): only the
    # provider's own models, by genai-prices' own rule for recognising them.
    own = source_provider.model_match
    if own is not None and not own.is_match(source.id):
        return False
    return not any(source.is_match(ref) for ref in known)


def _plan_new_model(result: Plan, provider: str, source: gp.ModelInfo, now: datetime) -> None:
    """Add ``source`` to ``result`` as a model to add, or as unmappable."""
    try:
        _, current, upcoming, notes = source_schedule(source, now)
    except Exception as error:
        result.unmappable.append(Skipped(provider, source.id, _reason(error)))
        return
    periods = [PeriodChange(None, current, _field_changes(_recorded(None), current))]
    periods += [PeriodChange(midnight(day), prices, []) for day, prices in upcoming]
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
                    window = diff.context_window.source
                    assert isinstance(window, int)  # a size the source states (_model_diff)
                    diff.model.context_window = window
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
