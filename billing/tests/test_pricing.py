"""Cost of one call from an (unsaved) price row: pure Decimal arithmetic, no database."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from billing.models import ModelPrice
from billing.pricing import Usage, cost_usd, request_fee_usd, usd_to_eur


def gpt_4o() -> ModelPrice:
    return ModelPrice(
        input_usd_per_mtok=D("2.50"),
        output_usd_per_mtok=D("10.00"),
        cached_input_usd_per_mtok=D("1.25"),
    )


def gpt_4_turbo() -> ModelPrice:
    return ModelPrice(input_usd_per_mtok=D("10.00"), output_usd_per_mtok=D("30.00"))


def claude_3_5_sonnet() -> ModelPrice:
    return ModelPrice(
        input_usd_per_mtok=D("3.00"),
        output_usd_per_mtok=D("15.00"),
        cached_input_usd_per_mtok=D("0.30"),
        cache_write_usd_per_mtok=D("3.75"),
    )


def gemini_1_5_pro() -> ModelPrice:
    return ModelPrice(
        input_usd_per_mtok=D("1.25"),
        output_usd_per_mtok=D("5.00"),
        long_context_threshold_tokens=128_000,
        long_input_usd_per_mtok=D("2.50"),
        long_output_usd_per_mtok=D("10.00"),
    )


def sonar() -> ModelPrice:
    return ModelPrice(
        input_usd_per_mtok=D("1.00"),
        output_usd_per_mtok=D("1.00"),
        request_fee_low_usd=D("0.005"),
        request_fee_medium_usd=D("0.008"),
        request_fee_high_usd=D("0.012"),
    )


def test_prompt_and_completion_tokens_cost_exactly_their_list_price():
    cost = cost_usd(gpt_4o(), Usage(prompt_tokens=1_000, completion_tokens=500))

    assert isinstance(cost, D)
    assert cost == D("0.0075")


def test_a_call_without_tokens_costs_nothing():
    assert cost_usd(gpt_4o(), Usage()) == D(0)


def test_cached_tokens_are_not_charged_twice():
    # 600 fresh x 2.50 + 400 cached x 1.25 + 100 completion x 10.00 = 3,000 per 1M
    usage = Usage(prompt_tokens=1_000, completion_tokens=100, cached_tokens=400)

    assert cost_usd(gpt_4o(), usage) == D("0.003")


def test_cache_write_tokens_are_charged_at_the_write_rate():
    # 500 fresh x 3.00 + 300 read x 0.30 + 200 written x 3.75 + 100 out x 15.00 = 3,840 per 1M
    usage = Usage(
        prompt_tokens=1_000, completion_tokens=100, cached_tokens=300, cache_write_tokens=200
    )

    assert cost_usd(claude_3_5_sonnet(), usage) == D("0.00384")


def test_a_model_without_a_cached_rate_charges_cached_tokens_at_the_input_rate():
    usage = Usage(prompt_tokens=1_000, cached_tokens=400)

    assert cost_usd(gpt_4_turbo(), usage) == D("0.01")


def test_a_model_without_a_cache_write_rate_charges_written_tokens_at_the_input_rate():
    usage = Usage(prompt_tokens=1_000, cache_write_tokens=400)

    assert cost_usd(gpt_4o(), usage) == D("0.0025")


def test_a_prompt_above_the_long_context_threshold_moves_the_whole_call_to_the_long_rates():
    # 128,001 x 2.50 + 1,000 x 10.00 = 330,002.5 per 1M
    usage = Usage(prompt_tokens=128_001, completion_tokens=1_000)

    assert cost_usd(gemini_1_5_pro(), usage) == D("0.3300025")


def test_a_prompt_of_exactly_the_long_context_threshold_keeps_the_short_rates():
    # 128,000 x 1.25 + 1,000 x 5.00 = 165,000 per 1M
    usage = Usage(prompt_tokens=128_000, completion_tokens=1_000)

    assert cost_usd(gemini_1_5_pro(), usage) == D("0.165")


def test_a_model_without_long_context_rates_ignores_long_prompts():
    usage = Usage(prompt_tokens=1_000_000)

    assert cost_usd(gpt_4o(), usage) == D("2.50")


@pytest.mark.parametrize(
    ("search_context_size", "fee"),
    [("low", D("0.005")), ("medium", D("0.008")), ("high", D("0.012")), (None, D("0.005"))],
)
def test_perplexity_adds_a_request_fee_by_search_context_size(search_context_size, fee):
    usage = Usage(prompt_tokens=100, completion_tokens=100, search_context_size=search_context_size)

    assert request_fee_usd(sonar(), search_context_size) == fee
    assert cost_usd(sonar(), usage) == D("0.0002") + fee


def test_a_model_without_request_fees_charges_no_fee_whatever_the_search_context():
    assert request_fee_usd(gpt_4o(), "high") == D(0)


def test_usd_to_eur_keeps_eight_decimal_places():
    eur = usd_to_eur(D("0.0075"), D("0.87"))

    assert eur == D("0.006525")
    assert eur.as_tuple().exponent == -8
    assert str(eur) == "0.00652500"


def test_usd_to_eur_rounds_beyond_eight_decimal_places():
    assert usd_to_eur(D("0.123456789"), D("1")) == D("0.12345679")
    assert usd_to_eur(D("0.000000001"), D("0.87")) == D("0")


def test_cached_tokens_above_the_prompt_are_clamped_to_the_prompt():
    # Only the 1,000 prompt tokens exist, all cached: 1,000 x 1.25, no negative fresh tokens.
    usage = Usage(prompt_tokens=1_000, cached_tokens=5_000)

    assert cost_usd(gpt_4o(), usage) == D("0.00125")


def test_cache_write_tokens_are_clamped_to_what_the_cached_tokens_leave_of_the_prompt():
    # 800 read x 0.30 + the remaining 200 written x 3.75 = 990 per 1M
    usage = Usage(prompt_tokens=1_000, cached_tokens=800, cache_write_tokens=500)

    assert cost_usd(claude_3_5_sonnet(), usage) == D("0.00099")
