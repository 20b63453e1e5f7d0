"""Writes to the price book: price and rate changes close the open period first."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from aqta.errors import AqtaError
from billing.models import ExchangeRate, LanguageModel, ModelPrice
from billing.pricing import Usage, cost_eur
from billing.selectors import model_price_at, usd_eur_rate_at

# A dated period of the price book: one model's price, or the USD to EUR rate.
Period = ModelPrice | ExchangeRate


def period_start_check(rows: Iterable[Period], valid_from: datetime) -> None:
    """A new period of one model's prices (or one currency pair's rates) must start after
    every recorded period, so that a change never rewrites what a past call cost."""
    bounds = [b for row in rows for b in (row.valid_from, row.valid_to) if b is not None]
    if bounds and valid_from <= max(bounds):
        raise AqtaError(
            f"The new period must start after {max(bounds):%Y-%m-%d %H:%M} (existing history).",
            param="valid_from",
        )


def _close_open_period(rows: Sequence[Period], valid_from: datetime) -> None:
    """End the open period of the locked ``rows`` where the new one begins."""
    period_start_check(rows, valid_from)
    for row in rows:
        if row.valid_to is None:
            row.valid_to = valid_from
            row.save(update_fields=["valid_to"])


@transaction.atomic
def model_price_set(
    *, model: LanguageModel, valid_from: datetime | None = None, **prices: Decimal | int | None
) -> ModelPrice:
    """Start a new price for ``model``; the open one ends where the new one begins."""
    valid_from = valid_from or timezone.now()
    _close_open_period(list(ModelPrice.objects.select_for_update().filter(model=model)), valid_from)
    return ModelPrice.objects.create(model=model, valid_from=valid_from, **prices)


@transaction.atomic
def exchange_rate_set(*, rate: Decimal, valid_from: datetime | None = None) -> ExchangeRate:
    valid_from = valid_from or timezone.now()
    if rate <= 0:
        raise AqtaError("An exchange rate must be positive.", param="rate")
    rows = ExchangeRate.objects.select_for_update().filter(base="USD", quote="EUR")
    _close_open_period(list(rows), valid_from)
    return ExchangeRate.objects.create(rate=rate, valid_from=valid_from)


def call_cost_eur(*, model: LanguageModel, usage: Usage, at: datetime | None = None) -> Decimal:
    """EUR cost of a call made at ``at`` with the prices and rate valid then (503 without)."""
    at = at or timezone.now()
    price = model_price_at(model=model, at=at)
    rate = usd_eur_rate_at(at=at) if price is not None else None
    return cost_eur(price, rate, usage, model_id=model.model_id, at=at.timestamp())
