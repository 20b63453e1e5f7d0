"""The mock provider's Gemini protocol on the wire: answers, function calls and JSON, and
streams as docs/providers.md §3 and §6 describe them.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from gateway.mock_provider import MockConfig, MockServer
from gateway.tests.mock_wire import (
    CHUNKS,
    GEMINI,
    GEMINI_FUNCTION,
    GEMINI_HEADERS,
    HELLO,
    REPLY,
    WEATHER_ARGS,
    data_payloads,
    error_of,
    gemini,
    sse_frames,
)

# --- Gemini: answers ------------------------------------------------------------------------------


def test_gemini_answers_a_generate_content_response(mock: MockServer) -> None:
    response = gemini(mock)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=UTF-8"
    body = response.json()
    assert list(body) == ["candidates", "usageMetadata", "modelVersion", "responseId"]
    assert body["candidates"] == [
        {
            "content": {"parts": [{"text": REPLY}], "role": "model"},
            "finishReason": "STOP",
            "index": 0,
        }
    ]
    assert body["usageMetadata"] == {
        "promptTokenCount": 6,
        "candidatesTokenCount": CHUNKS,
        "totalTokenCount": 6 + CHUNKS,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 6}],
    }
    assert body["modelVersion"] == GEMINI
    assert isinstance(body["responseId"], str) and body["responseId"]


def test_gemini_takes_the_key_from_the_query(mock: MockServer) -> None:
    response = gemini(mock, query="?key=AIza-x", headers={})

    assert response.status_code == 200
    assert mock.stats()["last_path"] == f"/v1beta/models/{GEMINI}:generateContent?key=AIza-x"


@pytest.mark.parametrize("key", ["", "wrong"])
def test_gemini_answers_a_missing_or_wrong_key_with_400_invalid_argument(key: str) -> None:
    with MockServer(MockConfig(api_key="right")) as mock:
        response = gemini(mock, headers={"x-goog-api-key": key} if key else {})

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == 400
    assert error["message"] == "API key not valid. Please pass a valid API key."
    assert error["status"] == "INVALID_ARGUMENT"
    assert error["details"][0]["reason"] == "API_KEY_INVALID"


def test_gemini_answers_an_unknown_model_with_404_not_found(mock: MockServer) -> None:
    response = gemini(mock, model="gemini-2.0-pro")

    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "code": 404,
            "message": "models/gemini-2.0-pro is not found for API version v1beta, or is not "
            "supported for generateContent. Call ListModels to see the list of available "
            "models and their supported methods.",
            "status": "NOT_FOUND",
        }
    }


def test_gemini_serves_the_v1_api_version_too(mock: MockServer) -> None:
    response = httpx.post(
        f"{mock.gemini_base_url}/v1/models/{GEMINI}:generateContent",
        json={"contents": [{"parts": [{"text": "hi"}]}]},
        headers=GEMINI_HEADERS,
    )

    assert response.json()["candidates"][0]["content"]["parts"] == [{"text": REPLY}]


def test_gemini_answers_an_unknown_method_with_404(mock: MockServer) -> None:
    response = gemini(mock, method="predict")

    assert response.status_code == 404
    assert response.json()["error"]["status"] == "NOT_FOUND"
    assert mock.stats()["chat_requests"] == 0


@pytest.mark.parametrize(
    "config_key",
    [("generationConfig", "maxOutputTokens"), ("generation_config", "max_output_tokens")],
)
def test_gemini_stops_at_max_output_tokens_in_either_spelling(
    mock: MockServer, config_key: tuple[str, str]
) -> None:
    section, field = config_key

    body = gemini(mock, {section: {field: 2}}).json()

    [candidate] = body["candidates"]
    assert candidate["content"]["parts"] == [{"text": "This is"}]
    assert candidate["finishReason"] == "MAX_TOKENS"
    assert body["usageMetadata"]["candidatesTokenCount"] == 2


@pytest.mark.parametrize("spelling", ["systemInstruction", "system_instruction"])
def test_gemini_counts_the_system_instruction_in_either_spelling(
    mock: MockServer, spelling: str
) -> None:
    body = gemini(mock, {spelling: {"parts": [{"text": "x" * 40}]}}).json()

    assert body["usageMetadata"]["promptTokenCount"] == (10 + 4) + 6


def test_gemini_answers_every_candidate(mock: MockServer) -> None:
    body = gemini(mock, {"generationConfig": {"candidateCount": 2}}).json()

    assert [c["index"] for c in body["candidates"]] == [0, 1]
    assert body["usageMetadata"]["candidatesTokenCount"] == 2 * CHUNKS


def test_gemini_rejects_an_unknown_request_field(mock: MockServer) -> None:
    response = gemini(mock, {"messages": HELLO})

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert error["message"] == (
        'Invalid JSON payload received. Unknown name "messages": Cannot find field.'
    )


@pytest.mark.parametrize(
    ("contents", "message"),
    [
        ([], "* GenerateContentRequest.contents: contents is not specified\n"),
        (
            [{"role": "assistant", "parts": [{"text": "x"}]}],
            "Please use a valid role: user, model.",
        ),
        (
            [{"role": "user", "parts": []}],
            "* GenerateContentRequest.contents[0].parts: contents.parts must not be empty.\n",
        ),
    ],
)
def test_gemini_rejects_invalid_contents(
    mock: MockServer, contents: list[Any], message: str
) -> None:
    response = gemini(mock, {"contents": contents})

    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": 400,
        "message": message,
        "status": "INVALID_ARGUMENT",
    }


# --- Gemini: function calls and JSON --------------------------------------------------------------


@pytest.mark.parametrize(
    "tools",
    [
        {"tools": [{"functionDeclarations": [GEMINI_FUNCTION]}]},
        {"tools": [{"function_declarations": [GEMINI_FUNCTION]}]},
    ],
)
def test_gemini_calls_a_declared_function(mock: MockServer, tools: dict[str, Any]) -> None:
    body = gemini(mock, tools).json()

    [candidate] = body["candidates"]
    assert candidate["content"] == {
        "parts": [{"functionCall": {"name": "get_weather", "args": WEATHER_ARGS}}],
        "role": "model",
    }
    assert candidate["finishReason"] == "STOP"


def test_gemini_fills_an_openapi_schema_with_capital_types(mock: MockServer) -> None:
    function = {
        "name": "lookup",
        "parameters": {
            "type": "OBJECT",
            "properties": {"q": {"type": "STRING"}, "n": {"type": "INTEGER"}},
            "required": ["q", "n"],
        },
    }

    body = gemini(mock, {"tools": [{"functionDeclarations": [function]}]}).json()

    call = body["candidates"][0]["content"]["parts"][0]["functionCall"]
    assert call == {"name": "lookup", "args": {"q": "mock", "n": 1}}


@pytest.mark.parametrize(
    "tool_config",
    [
        {"toolConfig": {"functionCallingConfig": {"mode": "NONE"}}},
        {"tool_config": {"function_calling_config": {"mode": "NONE"}}},
    ],
)
def test_gemini_mode_none_gets_text(mock: MockServer, tool_config: dict[str, Any]) -> None:
    body = gemini(mock, {"tools": [{"functionDeclarations": [GEMINI_FUNCTION]}], **tool_config})

    assert body.json()["candidates"][0]["content"]["parts"] == [{"text": REPLY}]


def test_gemini_mode_any_calls_the_allowed_function(mock: MockServer) -> None:
    other = {"name": "get_time", "parameters": {"type": "OBJECT", "properties": {}}}
    body = {
        "tools": [{"functionDeclarations": [GEMINI_FUNCTION, other]}],
        "toolConfig": {
            "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_time"]}
        },
    }

    part = gemini(mock, body).json()["candidates"][0]["content"]["parts"][0]

    assert part == {"functionCall": {"name": "get_time", "args": {}}}


def test_gemini_answers_text_after_a_function_response(mock: MockServer) -> None:
    contents = [
        {"role": "user", "parts": [{"text": "weather?"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {}}}]},
        {
            "role": "user",
            "parts": [{"functionResponse": {"name": "get_weather", "response": {"t": 21}}}],
        },
    ]
    body = {"contents": contents, "tools": [{"functionDeclarations": [GEMINI_FUNCTION]}]}

    parts = gemini(mock, body).json()["candidates"][0]["content"]["parts"]

    assert parts == [{"text": REPLY}]


@pytest.mark.parametrize(
    "generation_config",
    [
        {"generationConfig": {"responseMimeType": "application/json", "responseSchema": {}}},
        {"generation_config": {"response_mime_type": "application/json", "response_schema": {}}},
    ],
)
def test_gemini_json_mode_answers_json_built_from_the_schema(
    mock: MockServer, generation_config: dict[str, Any]
) -> None:
    schema = {
        "type": "OBJECT",
        "properties": {
            "name": {"type": "STRING"},
            "tags": {"type": "ARRAY", "items": {"type": "STRING"}},
            "ok": {"type": "BOOLEAN"},
        },
        "propertyOrdering": ["name", "tags", "ok"],
    }
    section = next(iter(generation_config))
    key = "responseSchema" if section == "generationConfig" else "response_schema"
    generation_config[section][key] = schema

    text = gemini(mock, generation_config).json()["candidates"][0]["content"]["parts"][0]["text"]

    assert json.loads(text) == {"name": "mock", "tags": ["mock"], "ok": True}


def test_gemini_safety_block_directive_blocks_the_prompt(mock: MockServer) -> None:
    contents = [{"role": "user", "parts": [{"text": "something mock:safety_block"}]}]

    body = gemini(mock, {"contents": contents}).json()

    assert "candidates" not in body
    assert body["promptFeedback"]["blockReason"] == "SAFETY"
    assert body["promptFeedback"]["safetyRatings"]
    assert body["usageMetadata"]["totalTokenCount"] == body["usageMetadata"]["promptTokenCount"]


# --- Gemini: streaming ----------------------------------------------------------------------------


def test_gemini_streams_data_lines_with_text_deltas_and_a_final_usage(mock: MockServer) -> None:
    response = gemini(mock, method="streamGenerateContent", query="?alt=sse")

    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.text.endswith("\r\n\r\n")
    assert "event:" not in response.text
    assert "[DONE]" not in response.text
    frames = sse_frames(response.text)
    assert all(frame.startswith("data: ") for frame in frames)
    chunks = [json.loads(frame[6:]) for frame in frames]
    assert len(chunks) == CHUNKS
    texts = [c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks]
    assert "".join(texts) == REPLY
    assert len({c["responseId"] for c in chunks}) == 1
    assert all(c["modelVersion"] == GEMINI for c in chunks)
    *running, last = chunks
    assert all("finishReason" not in c["candidates"][0] for c in running)
    assert all(c["usageMetadata"]["totalTokenCount"] == 6 for c in running)
    assert all("candidatesTokenCount" not in c["usageMetadata"] for c in running)
    assert last["candidates"][0]["finishReason"] == "STOP"
    assert last["usageMetadata"]["promptTokenCount"] == 6
    assert last["usageMetadata"]["candidatesTokenCount"] == CHUNKS
    assert last["usageMetadata"]["totalTokenCount"] == 6 + CHUNKS


def test_gemini_streams_a_json_array_without_alt_sse(mock: MockServer) -> None:
    response = gemini(mock, method="streamGenerateContent")

    assert response.headers["content-type"].startswith("application/json")
    chunks = response.json()
    assert isinstance(chunks, list)
    assert len(chunks) == CHUNKS
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    texts = [c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks]
    assert "".join(texts) == REPLY


def test_gemini_streams_a_function_call_whole_in_one_chunk(mock: MockServer) -> None:
    response = gemini(
        mock,
        {"tools": [{"functionDeclarations": [GEMINI_FUNCTION]}]},
        method="streamGenerateContent",
        query="?alt=sse",
    )

    [chunk] = [json.loads(p) for p in data_payloads(response.text)]
    candidate = chunk["candidates"][0]
    assert candidate["content"]["parts"] == [
        {"functionCall": {"name": "get_weather", "args": WEATHER_ARGS}}
    ]
    assert candidate["finishReason"] == "STOP"
    assert chunk["usageMetadata"]["candidatesTokenCount"] > 0


def test_gemini_streams_a_safety_block_as_one_chunk(mock: MockServer) -> None:
    contents = [{"role": "user", "parts": [{"text": "mock:safety_block"}]}]

    response = gemini(
        mock, {"contents": contents}, method="streamGenerateContent", query="?alt=sse"
    )

    [chunk] = [json.loads(p) for p in data_payloads(response.text)]
    assert chunk["promptFeedback"]["blockReason"] == "SAFETY"
    assert "candidates" not in chunk


def test_gemini_sends_an_error_object_mid_stream(mock: MockServer) -> None:
    mock.script({"error_event_after_chunks": 2})

    response = gemini(mock, method="streamGenerateContent", query="?alt=sse")

    payloads = [json.loads(p) for p in data_payloads(response.text)]
    assert len(payloads) == 3
    assert payloads[-1]["error"]["code"] == 500
    assert payloads[-1]["error"]["status"] == "INTERNAL"


def test_gemini_ends_the_json_array_after_a_mid_stream_error(mock: MockServer) -> None:
    mock.script({"error_event_after_chunks": 1})

    chunks = gemini(mock, method="streamGenerateContent").json()

    assert len(chunks) == 2
    assert chunks[-1]["error"]["status"] == "INTERNAL"


def test_gemini_json_array_stream_wraps_an_early_error_in_an_array(mock: MockServer) -> None:
    mock.script({"status": 429})

    response = gemini(mock, method="streamGenerateContent")

    assert response.status_code == 429
    [body] = response.json()
    assert body["error"]["status"] == "RESOURCE_EXHAUSTED"


def test_gemini_answers_an_injected_429_as_resource_exhausted(mock: MockServer) -> None:
    mock.script({"status": 429, "retry_after": 30})

    response = gemini(mock, method="streamGenerateContent", query="?alt=sse")

    assert response.status_code == 429
    assert response.headers["retry-after"] == "30"
    error = response.json()["error"]
    assert error["code"] == 429
    assert error["status"] == "RESOURCE_EXHAUSTED"
    assert error["message"].startswith("You exceeded your current quota")
    retry = [d for d in error["details"] if d["@type"].endswith("google.rpc.RetryInfo")]
    assert retry == [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "30s"}]


@pytest.mark.parametrize(
    ("status", "name"),
    [
        (400, "INVALID_ARGUMENT"),
        (403, "PERMISSION_DENIED"),
        (500, "INTERNAL"),
        (503, "UNAVAILABLE"),
    ],
)
def test_gemini_injected_statuses_carry_canonical_names(
    mock: MockServer, status: int, name: str
) -> None:
    mock.script({"status": status})

    response = gemini(mock)

    assert response.status_code == status
    assert error_of("gemini", response) == name
