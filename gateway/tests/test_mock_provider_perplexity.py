"""The mock provider's Perplexity protocol on the wire: answers, errors and the stream
variants of docs/providers.md §4 and §6.
"""

from __future__ import annotations

import json

import pytest

from gateway.mock_provider import MockConfig, MockServer
from gateway.tests.mock_wire import (
    CHUNKS,
    HELLO,
    REPLY,
    UUID_RE,
    data_payloads,
    gemini,
    pplx,
)

# --- Perplexity -----------------------------------------------------------------------------------


def test_perplexity_answers_with_citations_search_results_and_cost(mock: MockServer) -> None:
    response = pplx(mock, {})

    assert response.status_code == 200
    body = response.json()
    assert UUID_RE.match(body["id"])
    assert body["object"] == "chat.completion"
    assert body["model"] == "sonar"
    assert isinstance(body["created"], int)
    assert "system_fingerprint" not in body
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": REPLY},
            "finish_reason": "stop",
        }
    ]
    assert all(url.startswith("https://") for url in body["citations"])
    [first, *_] = body["search_results"]
    assert set(first) == {"title", "url", "date", "last_updated", "snippet", "source"}
    assert first["url"] == body["citations"][0]
    # 6 prompt and 5 completion tokens at $1/M each, rounded to 5 decimals, + $0.005 (low).
    assert body["usage"] == {
        "prompt_tokens": 6,
        "completion_tokens": CHUNKS,
        "total_tokens": 6 + CHUNKS,
        "search_context_size": "low",
        "cost": {
            "input_tokens_cost": 0.00001,
            "output_tokens_cost": 0.00001,
            "request_cost": 0.005,
            "total_cost": 0.00502,
        },
    }


def test_perplexity_charges_the_request_fee_of_the_search_context_size(mock: MockServer) -> None:
    body = {"model": "sonar-pro", "web_search_options": {"search_context_size": "high"}}

    usage = pplx(mock, body).json()["usage"]

    assert usage["search_context_size"] == "high"
    assert usage["cost"]["request_cost"] == 0.014
    assert usage["cost"]["output_tokens_cost"] == round(CHUNKS * 15 / 1e6, 5)


def test_perplexity_answers_json_for_a_json_schema(mock: MockServer) -> None:
    response_format = {
        "type": "json_schema",
        "json_schema": {"schema": {"type": "object", "properties": {"a": {"type": "string"}}}},
    }

    content = pplx(mock, {"response_format": response_format}).json()["choices"][0]["message"]

    assert json.loads(content["content"]) == {"a": "mock"}


def test_perplexity_rejects_json_object_mode(mock: MockServer) -> None:
    messages = [{"role": "user", "content": "answer in json"}]

    response = pplx(mock, {"messages": messages, "response_format": {"type": "json_object"}})

    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "code"}
    assert error["type"] == "bad_request"
    assert error["code"] == 400
    assert "ResponseFormatText -> type: Input should be 'text'" in error["message"]


def test_perplexity_rejects_an_unknown_model_with_invalid_model(mock: MockServer) -> None:
    response = pplx(mock, {"model": "llama-3.1-sonar-small-128k-online"})

    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "message": "Invalid model 'llama-3.1-sonar-small-128k-online'. Permitted models can "
            "be found in the documentation at https://docs.perplexity.ai/guides/model-cards.",
            "type": "invalid_model",
            "code": 400,
        }
    }


def test_perplexity_accepts_extra_models_from_the_config() -> None:
    with MockServer(MockConfig(extra_models=("sonar-next",))) as mock:
        assert pplx(mock, {"model": "sonar-next"}).status_code == 200
        assert gemini(mock, model="sonar-next").status_code == 200


def test_perplexity_rejects_roles_that_do_not_alternate(mock: MockServer) -> None:
    messages = [*HELLO, {"role": "user", "content": "again"}]

    response = pplx(mock, {"messages": messages})

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_message"
    assert response.json()["error"]["code"] == 400


@pytest.mark.parametrize("headers", [{"Authorization": ""}, {"Authorization": "Basic abc"}])
def test_perplexity_answers_a_missing_key_with_an_openresty_html_401(
    mock: MockServer, headers: dict[str, str]
) -> None:
    response = pplx(mock, {}, **headers)

    assert response.status_code == 401
    assert response.headers["content-type"].startswith("text/html")
    assert "<title>401 Authorization Required</title>" in response.text
    assert "openresty" in response.text


def test_perplexity_answers_a_wrong_configured_key_with_html() -> None:
    with MockServer(MockConfig(api_key="pplx-right")) as mock:
        wrong = pplx(mock, {}, Authorization="Bearer pplx-wrong")
        right = pplx(mock, {}, Authorization="Bearer pplx-right")

    assert wrong.status_code == 401
    assert wrong.headers["content-type"].startswith("text/html")
    assert right.status_code == 200


def test_perplexity_streams_cumulative_usage_and_a_done_object_without_done_marker(
    mock: MockServer,
) -> None:
    response = pplx(mock, {"stream": True})

    assert response.headers["content-type"].startswith("text/event-stream")
    payloads = data_payloads(response.text)
    assert "[DONE]" not in payloads
    chunks = [json.loads(p) for p in payloads]
    *tokens, done = chunks
    assert len(tokens) == CHUNKS
    assert len({c["id"] for c in chunks}) == 1
    assert UUID_RE.match(done["id"])
    assert all(c["object"] == "chat.completion.chunk" for c in tokens)
    assert [c["usage"]["completion_tokens"] for c in tokens] == list(range(1, CHUNKS + 1))
    assert all(c["citations"] for c in chunks)
    assert all(c["choices"][0]["finish_reason"] is None for c in tokens)
    assert "".join(c["choices"][0]["delta"]["content"] for c in tokens) == REPLY
    assert done["object"] == "chat.completion.done"
    assert done["choices"][0]["finish_reason"] == "stop"
    assert done["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert done["search_results"]
    assert done["usage"]["completion_tokens"] == CHUNKS
    assert done["usage"]["cost"]["request_cost"] == 0.005


def test_perplexity_done_directive_adds_the_done_marker(mock: MockServer) -> None:
    messages = [{"role": "user", "content": "hi mock:pplx_done=1"}]

    payloads = data_payloads(pplx(mock, {"stream": True, "messages": messages}).text)

    assert payloads[-1] == "[DONE]"
    assert json.loads(payloads[-2])["object"] == "chat.completion.done"


def test_perplexity_legacy_directive_streams_message_and_delta(mock: MockServer) -> None:
    messages = [{"role": "user", "content": "hi mock:pplx_legacy=1"}]

    payloads = data_payloads(pplx(mock, {"stream": True, "messages": messages}).text)

    assert "[DONE]" not in payloads
    chunks = [json.loads(p) for p in payloads]
    assert all(c["object"] == "chat.completion" for c in chunks)
    assert [c["choices"][0]["message"]["content"] for c in chunks[:2]] == ["This", "This is"]
    assert [c["choices"][0]["delta"]["content"] for c in chunks[:2]] == ["This", " is"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"][0]["message"]["content"] == REPLY
    assert chunks[-1]["usage"]["completion_tokens"] == CHUNKS


def test_perplexity_injected_401_is_html_and_429_is_json(mock: MockServer) -> None:
    mock.script({"status": 401}, {"status": 429})

    unauthorized = pplx(mock, {})
    limited = pplx(mock, {})

    assert unauthorized.status_code == 401
    assert unauthorized.headers["content-type"].startswith("text/html")
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == 429


def test_perplexity_sends_an_error_object_mid_stream(mock: MockServer) -> None:
    mock.script({"error_event_after_chunks": 2})

    payloads = [json.loads(p) for p in data_payloads(pplx(mock, {"stream": True}).text)]

    assert len(payloads) == 3
    assert payloads[-1]["error"]["code"] == 500
