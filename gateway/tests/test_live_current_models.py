"""The models seeded by billing 0005 answer through a live gateway and the mock provider,
priced at their list price, and the tier rules hold for them."""

from __future__ import annotations

from decimal import Decimal

import httpx
import openai
import pytest

from billing.models import LanguageModel
from billing.pricing import Usage, cost_usd, usd_to_eur
from billing.selectors import model_price_at, usd_eur_rate_at
from gateway.models import Trace
from gateway.tests.conftest import wait_for

MESSAGES = [{"role": "user", "content": "Say hello."}]
# model asked for → (provider, where the mock was called, model id it was sent)
NEW_MODELS = {
    "gpt-4": ("openai", "/v1/chat/completions", "gpt-4"),
    "gpt-6.1-sol": ("openai", "/v1/chat/completions", "gpt-6.1-sol"),
    "gpt-6-luna": ("openai", "/v1/chat/completions", "gpt-6-luna"),
    "claude-opus-5-5": ("anthropic", "/v1/messages", "claude-opus-5-5"),
    "claude-haiku-5-5": ("anthropic", "/v1/messages", "claude-haiku-5-5"),
    "gemini-4-argon": ("google", "/models/gemini-4-argon:generateContent", None),
    "gemini-3.8-flash": ("google", "/models/gemini-3.8-flash:generateContent", None),
    "gemini-3.5-flash-lite": ("google", "/models/gemini-3.5-flash-lite:generateContent", None),
}


def _stats(gw) -> dict:
    stats: dict = httpx.get(gw.mock.url + "/_mock/stats").json()
    return stats


@pytest.mark.parametrize("model_id", NEW_MODELS)
def test_a_new_model_answers_and_costs_its_list_price(gw, make_key, model_id):
    provider, path, sent_model = NEW_MODELS[model_id]
    secret, _ = make_key()

    completion = gw.sdk(secret).chat.completions.create(model=model_id, messages=MESSAGES)

    assert completion.choices[0].message.content
    aqta = completion.model_extra["aqta"]
    assert (aqta["provider"], aqta["status"]) == (provider, "passed")
    stats = _stats(gw)
    assert stats["last_path"].endswith(path)
    if sent_model is not None:
        assert stats["last_request"]["model"] == sent_model
    trace = wait_for(lambda: Trace.objects.filter(id=aqta["trace_id"]).first())
    usage = Usage(
        prompt_tokens=trace.prompt_tokens,
        completion_tokens=trace.completion_tokens,
        cached_tokens=trace.cached_tokens,
    )
    price = model_price_at(model=LanguageModel.objects.get(model_id=model_id))
    assert price is not None
    expected = usd_to_eur(cost_usd(price, usage), usd_eur_rate_at())
    assert expected > 0
    assert Decimal(str(aqta["cost_eur"])) == expected == trace.cost_eur


def test_an_undated_claude_3_name_reaches_the_dated_id(gw, make_key):
    secret, _ = make_key()

    completion = gw.sdk(secret).chat.completions.create(
        model="claude-3-5-sonnet", messages=MESSAGES
    )

    assert completion.model_extra["aqta"]["provider"] == "anthropic"
    assert _stats(gw)["last_request"]["model"] == "claude-3-5-sonnet-20241022"


def test_free_may_call_the_new_small_models_and_not_the_large_ones(gw, make_key):
    secret, _ = make_key(tier="free")
    client = gw.sdk(secret)

    for model_id in ("gpt-6-luna", "claude-haiku-5-5", "gemini-3.8-flash"):
        completion = client.chat.completions.create(model=model_id, messages=MESSAGES)
        assert completion.model_extra["aqta"]["status"] == "passed", model_id
    for model_id in ("gpt-4", "gpt-6.1-sol", "claude-opus-5-5", "gemini-4-argon"):
        with pytest.raises(openai.PermissionDeniedError) as refused:
            client.chat.completions.create(model=model_id, messages=MESSAGES)
        assert refused.value.code == "model_not_allowed", model_id
