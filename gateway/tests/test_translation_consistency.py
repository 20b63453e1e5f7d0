"""Every translating provider refuses, names and handles the same things the same way."""

from __future__ import annotations

import orjson
import pytest

from aqta.errors import AqtaError
from gateway.dataplane.catalog import Deployment, Endpoint
from gateway.dataplane.providers import adapter_for
from gateway.dataplane.providers.base import Provider

PROVIDERS = ["anthropic", "google", "perplexity"]
USER = [{"role": "user", "content": "Hi"}]


def _adapter(provider: str) -> Provider:
    adapter = adapter_for(provider)
    assert adapter is not None
    return adapter


def _deployment(provider: str) -> Deployment:
    endpoint = Endpoint(f"env-{provider}", provider, "https://upstream.test", "key")
    return Deployment(provider, provider, endpoint, "some-model", 4096)


def _refusal(provider: str, **fields) -> AqtaError:
    with pytest.raises(AqtaError) as refused:
        _adapter(provider).check_request({"model": "m", "messages": USER, **fields})
    return refused.value


def _sent(provider: str, messages: list) -> dict:
    adapter = _adapter(provider)
    body = {"model": "m", "messages": messages}
    adapter.check_request(body)
    sent: dict = orjson.loads(adapter.build_request(_deployment(provider), body, False).body)
    return sent


REFUSED = {
    "logprobs": ({"logprobs": True}, PROVIDERS),
    "audio": ({"audio": {"voice": "alloy", "format": "wav"}}, PROVIDERS),
    "modalities": ({"modalities": ["text", "audio"]}, PROVIDERS),
    "n": ({"n": 2}, ["anthropic", "perplexity"]),  # Gemini has candidateCount
}


@pytest.mark.parametrize(
    ("provider", "fields", "param"),
    [
        pytest.param(provider, fields, param, id=f"{param}-{provider}")
        for param, (fields, providers) in REFUSED.items()
        for provider in providers
    ],
)
def test_a_parameter_a_provider_cannot_honour_is_one_code_naming_it(provider, fields, param):
    error = _refusal(provider, **fields)

    assert (error.status, error.code, error.param) == (400, "unsupported_parameter", param)


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("value", [5, "audio", {"a": 1}, None, []])
def test_modalities_of_another_type_never_crash_an_adapter(provider, value):
    adapter = _adapter(provider)
    body = {"model": "m", "messages": USER, "modalities": value}
    try:
        adapter.check_request(body)
    except AqtaError as error:
        assert error.status == 400
    else:
        adapter.build_request(_deployment(provider), body, False)


def _user_text(provider: str, payload: dict) -> str:
    if provider == "google":
        [turn] = payload["contents"]
        assert turn["role"] == "user" and "systemInstruction" not in payload
        return "".join(part["text"] for part in turn["parts"])
    [turn] = payload["messages"]
    assert turn["role"] == "user" and "system" not in payload
    content = turn["content"]
    return content if isinstance(content, str) else "".join(b["text"] for b in content)


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("role", ["system", "developer"])
def test_a_conversation_of_system_messages_alone_is_sent_as_the_user_turn(provider, role):
    payload = _sent(provider, [{"role": role, "content": "Name a colour."}])

    assert _user_text(provider, payload) == "Name a colour."
