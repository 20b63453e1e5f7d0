"""Dated prices and exchange rates: changes close the open period, history stays priced."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
import time_machine
from django.db import IntegrityError, transaction

from aqta.errors import AqtaError
from billing.models import ExchangeRate, LanguageModel, ModelPrice
from billing.pricing import Usage
from billing.selectors import model_price_at, usd_eur_rate_at
from billing.services import call_cost_eur, exchange_rate_set, model_price_set

SEEDED_FROM = datetime(2024, 1, 1, tzinfo=UTC)
CHANGE = datetime(2025, 6, 1, tzinfo=UTC)
BEFORE_CHANGE = CHANGE - timedelta(seconds=1)
# gpt-4o at its list price (2.50 / 10.00): 1,000 x 2.50 + 500 x 10.00 = 0.0075 USD.
USAGE = Usage(prompt_tokens=1_000, completion_tokens=500)


@pytest.fixture
def gpt_4o(db) -> LanguageModel:
    return LanguageModel.objects.get(model_id="gpt-4o")


@pytest.fixture
def unpriced_model(db) -> LanguageModel:
    return LanguageModel.objects.create(provider="openai_compatible", model_id="llama-local")


def test_a_call_is_priced_in_eur_with_the_seeded_price_and_rate(gpt_4o):
    # 0.0075 USD x 0.87 EUR/USD
    assert call_cost_eur(model=gpt_4o, usage=USAGE, at=CHANGE) == D("0.006525")


@time_machine.travel(datetime(2025, 3, 1, 12, tzinfo=UTC), tick=False)
def test_a_call_without_a_date_is_priced_now(gpt_4o):
    assert call_cost_eur(model=gpt_4o, usage=USAGE) == D("0.006525")


def test_a_new_price_closes_the_open_one_where_it_begins(gpt_4o):
    old = model_price_at(model=gpt_4o, at=BEFORE_CHANGE)
    assert old is not None

    new = model_price_set(
        model=gpt_4o,
        valid_from=CHANGE,
        input_usd_per_mtok=D("5.00"),
        output_usd_per_mtok=D("20.00"),
    )

    old.refresh_from_db()
    assert old.valid_to == CHANGE
    assert new.valid_from == CHANGE
    assert new.valid_to is None
    assert list(gpt_4o.prices.filter(valid_to__isnull=True)) == [new]


def test_a_price_change_does_not_rewrite_what_an_earlier_call_cost(gpt_4o):
    model_price_set(
        model=gpt_4o,
        valid_from=CHANGE,
        input_usd_per_mtok=D("5.00"),
        output_usd_per_mtok=D("20.00"),
    )

    assert call_cost_eur(model=gpt_4o, usage=USAGE, at=BEFORE_CHANGE) == D("0.006525")
    # 1,000 x 5.00 + 500 x 20.00 = 0.015 USD x 0.87
    assert call_cost_eur(model=gpt_4o, usage=USAGE, at=CHANGE) == D("0.01305")


@time_machine.travel(CHANGE, tick=False)
def test_a_new_price_without_a_date_starts_now(gpt_4o):
    new = model_price_set(
        model=gpt_4o, input_usd_per_mtok=D("5.00"), output_usd_per_mtok=D("20.00")
    )

    assert new.valid_from == CHANGE
    assert model_price_at(model=gpt_4o) == new


@pytest.mark.parametrize("valid_from", [SEEDED_FROM, SEEDED_FROM - timedelta(days=1)])
def test_a_new_price_starting_at_or_before_the_current_one_is_refused(gpt_4o, valid_from):
    with pytest.raises(AqtaError) as raised:
        model_price_set(
            model=gpt_4o,
            valid_from=valid_from,
            input_usd_per_mtok=D("5.00"),
            output_usd_per_mtok=D("20.00"),
        )

    assert raised.value.param == "valid_from"
    current = gpt_4o.prices.get()
    assert current.valid_from == SEEDED_FROM
    assert current.valid_to is None


def test_the_first_price_of_a_model_opens_its_price_book(unpriced_model):
    price = model_price_set(
        model=unpriced_model,
        valid_from=CHANGE,
        input_usd_per_mtok=D("1.00"),
        output_usd_per_mtok=D("2.00"),
    )

    assert model_price_at(model=unpriced_model, at=CHANGE) == price


def test_a_new_rate_closes_the_open_one_and_keeps_earlier_calls_at_the_old_rate(gpt_4o):
    old = ExchangeRate.objects.get(valid_to__isnull=True)

    new = exchange_rate_set(rate=D("0.90"), valid_from=CHANGE)

    old.refresh_from_db()
    assert old.valid_to == CHANGE
    assert new.valid_to is None
    assert usd_eur_rate_at(at=BEFORE_CHANGE) == D("0.87")
    assert usd_eur_rate_at(at=CHANGE) == D("0.90")
    assert call_cost_eur(model=gpt_4o, usage=USAGE, at=BEFORE_CHANGE) == D("0.006525")
    assert call_cost_eur(model=gpt_4o, usage=USAGE, at=CHANGE) == D("0.00675")


@pytest.mark.parametrize("valid_from", [SEEDED_FROM, SEEDED_FROM - timedelta(days=1)])
def test_a_new_rate_starting_at_or_before_the_current_one_is_refused(db, valid_from):
    with pytest.raises(AqtaError) as raised:
        exchange_rate_set(rate=D("0.90"), valid_from=valid_from)

    assert raised.value.param == "valid_from"
    assert ExchangeRate.objects.get(valid_to__isnull=True).rate == D("0.87")


@pytest.mark.parametrize("rate", [D("0"), D("-0.87")])
def test_a_non_positive_rate_is_refused(db, rate):
    with pytest.raises(AqtaError) as raised:
        exchange_rate_set(rate=rate, valid_from=CHANGE)

    assert raised.value.param == "rate"
    assert ExchangeRate.objects.get(valid_to__isnull=True).rate == D("0.87")


def test_there_is_no_price_before_the_first_one(gpt_4o, unpriced_model):
    assert model_price_at(model=gpt_4o, at=SEEDED_FROM - timedelta(seconds=1)) is None
    assert model_price_at(model=unpriced_model, at=CHANGE) is None


def test_pricing_a_call_without_a_price_is_a_service_error(unpriced_model):
    with pytest.raises(AqtaError) as raised:
        call_cost_eur(model=unpriced_model, usage=USAGE, at=CHANGE)

    assert raised.value.status == 503
    assert raised.value.code == "price_missing"


def test_pricing_a_call_without_an_exchange_rate_is_a_service_error(gpt_4o):
    ExchangeRate.objects.all().delete()

    with pytest.raises(AqtaError) as raised:
        usd_eur_rate_at(at=CHANGE)

    assert raised.value.status == 503
    assert raised.value.code == "exchange_rate_missing"
    with pytest.raises(AqtaError, match="exchange rate"):
        call_cost_eur(model=gpt_4o, usage=USAGE, at=CHANGE)


def test_there_is_no_exchange_rate_before_the_first_one(db):
    with pytest.raises(AqtaError) as raised:
        usd_eur_rate_at(at=SEEDED_FROM - timedelta(seconds=1))

    assert raised.value.code == "exchange_rate_missing"


def test_the_database_refuses_two_open_prices_for_one_model(gpt_4o):
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelPrice.objects.create(
            model=gpt_4o,
            valid_from=CHANGE,
            input_usd_per_mtok=D("5.00"),
            output_usd_per_mtok=D("20.00"),
        )


@pytest.mark.parametrize("valid_to", [CHANGE, CHANGE - timedelta(days=1)])
def test_the_database_refuses_a_price_period_that_ends_before_it_starts(gpt_4o, valid_to):
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelPrice.objects.create(
            model=gpt_4o,
            valid_from=CHANGE,
            valid_to=valid_to,
            input_usd_per_mtok=D("5.00"),
            output_usd_per_mtok=D("20.00"),
        )


def test_the_database_refuses_two_open_rates_for_one_currency_pair(db):
    with pytest.raises(IntegrityError), transaction.atomic():
        ExchangeRate.objects.create(rate=D("0.90"), valid_from=CHANGE)


@pytest.mark.parametrize("rate", [D("0"), D("-0.87")])
def test_the_database_refuses_a_non_positive_rate(db, rate):
    with pytest.raises(IntegrityError), transaction.atomic():
        ExchangeRate.objects.create(
            rate=rate, valid_from=SEEDED_FROM - timedelta(days=30), valid_to=SEEDED_FROM
        )
