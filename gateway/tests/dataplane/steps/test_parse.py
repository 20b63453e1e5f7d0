"""Step 2, the body (gateway/dataplane/steps/parse.py, and the body's size limit read in
gateway/dataplane/http.py before it): JSON only, valid against OpenAI's schema."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from aqta.errors import AqtaError, ErrorCode
from gateway.dataplane import http
from gateway.dataplane.steps.parse import parse
from gateway.tests.dataplane.steps.fakes import MESSAGES, body, run, scope

JSON = {"content_type": "application/json"}


def refused(raw: bytes, **headers: str) -> AqtaError:
    with pytest.raises(AqtaError) as raised:
        parse(scope(**headers), raw)
    return raised.value


def where(error: AqtaError) -> tuple[str, int, str | None]:
    return error.code, error.status, error.param


@pytest.mark.parametrize(
    "headers",
    [{}, JSON, {"content_type": "application/json; charset=utf-8"}],
    ids=["no-content-type", "json", "json-charset"],
)
def test_a_valid_body_is_returned_as_decoded(headers):
    sent = body(temperature=0.5, max_tokens=20, stream=True, stream_options={"include_usage": True})
    assert parse(scope(**headers), orjson.dumps(sent)) == sent


def test_a_null_for_a_parameter_without_null_means_not_given():
    parsed = parse(scope(), orjson.dumps(body(tools=None, user=None)))
    assert parsed == body()


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_a_body_that_is_not_json_by_its_content_type_is_refused(content_type):
    error = refused(orjson.dumps(body()), content_type=content_type)
    assert where(error) == (ErrorCode.INVALID_REQUEST, 400, None)
    assert error.message == "Content-Type must be application/json."


@pytest.mark.parametrize(
    "raw",
    [b"", b"{", b'{"model": "gpt-4o-mini",}', b"model=gpt-4o-mini", b"\xff\xfe{}"],
    ids=["empty", "unterminated", "trailing-comma", "form", "not-utf8"],
)
def test_malformed_json_is_invalid_json(raw):
    error = refused(raw)
    assert where(error) == (ErrorCode.INVALID_JSON, 400, None)
    assert error.message.startswith("Malformed JSON body: ")


def test_a_raw_nul_byte_is_malformed_json_inside_or_outside_a_string():
    outside = refused(b'{"model":"gpt-4o-mini",\x00"messages":[]}')
    inside = refused(b'{"model":"gpt-4o-\x00mini","messages":[{"role":"user","content":"Hi"}]}')
    assert where(outside) == where(inside) == (ErrorCode.INVALID_JSON, 400, None)
    assert "control character" in inside.message


def test_an_escaped_nul_is_text_like_any_other():
    raw = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"a\\u0000b"}]}'
    assert parse(scope(), raw)["messages"] == [{"role": "user", "content": "a\x00b"}]


def nested(levels: int) -> dict[str, Any]:
    node: dict[str, Any] = {}
    top = node
    for _ in range(levels - 1):
        node["a"] = {}
        node = node["a"]
    return top


def with_parameters(parameters: dict[str, Any]) -> bytes:
    tool = {"type": "function", "function": {"name": "f", "parameters": parameters}}
    return orjson.dumps(body(tools=[tool]))


def test_nesting_past_the_depth_cap_is_refused_naming_where(settings):
    # The body, tools, the tool and function are 4 levels: 60 more reach 64.
    assert settings.AQTA_MAX_JSON_DEPTH == 64
    assert parse(scope(), with_parameters(nested(60)))["tools"]
    error = refused(with_parameters(nested(61)))
    assert where(error)[:2] == (ErrorCode.INVALID_PARAMETER, 400)
    assert error.param == "tools[0].function.parameters" + ".a" * 60
    assert error.message.endswith("at most 64 levels of arrays and objects are accepted.")


def test_nesting_deeper_than_the_decoder_goes_is_malformed_json():
    raw = b'{"model":"gpt-4o-mini","messages":' + b"[" * 2000 + b"]" * 2000 + b"}"
    error = refused(raw)
    assert where(error) == (ErrorCode.INVALID_JSON, 400, None)
    assert "depth" in error.message


@pytest.mark.parametrize(
    ("sent", "code", "param", "message"),
    [
        ([MESSAGES], ErrorCode.INVALID_REQUEST, None, "The request body must be a JSON object."),
        ({"messages": MESSAGES}, ErrorCode.MISSING_PARAMETER, "model", "model is required."),
        (
            {"model": "gpt-4o-mini"},
            ErrorCode.MISSING_PARAMETER,
            "messages",
            "messages is required.",
        ),
        (body(model=5), ErrorCode.INVALID_PARAMETER, "model", "model must be a string."),
        (body(model=""), ErrorCode.INVALID_PARAMETER, "model", "model must be a non-empty string."),
        (
            body(messages="Hello"),
            ErrorCode.INVALID_PARAMETER,
            "messages",
            "messages must be an array of objects.",
        ),
        (body(stream="yes"), ErrorCode.INVALID_PARAMETER, "stream", "stream must be a boolean."),
        (body(max_tokens="5"), ErrorCode.INVALID_PARAMETER, "max_tokens", None),
        (body(max_tokens=2.0), ErrorCode.INVALID_PARAMETER, "max_tokens", None),
        (body(max_tokens=0), ErrorCode.INVALID_PARAMETER, "max_tokens", None),
        (body(n=1.5), ErrorCode.INVALID_PARAMETER, "n", None),
        (
            body(stream_options={"include_usage": True}),
            ErrorCode.INVALID_PARAMETER,
            "stream_options",
            "stream_options is only allowed with stream: true.",
        ),
        (
            body(messages=[{"role": "robot", "content": "Hi"}]),
            ErrorCode.INVALID_PARAMETER,
            "messages[0].role",
            None,
        ),
    ],
    ids=[
        "array",
        "no-model",
        "no-messages",
        "model-int",
        "model-empty",
        "messages-string",
        "stream-string",
        "max-tokens-string",
        "max-tokens-float",
        "max-tokens-zero",
        "n-float",
        "stream-options-alone",
        "unknown-role",
    ],
)
def test_a_body_of_the_wrong_shape_is_refused_naming_the_parameter(sent, code, param, message):
    error = refused(orjson.dumps(sent))
    assert where(error) == (code, 400, param)
    if message is not None:
        assert error.message == message


def receiving(*chunks: bytes, disconnect: bool = False) -> http.Receive:
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]
    if disconnect:
        messages[-1]["more_body"] = True
        messages.append({"type": "http.disconnect"})

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    return receive


def read(receive: http.Receive, limit: int) -> bytes:
    out: list[bytes] = []

    async def scenario() -> None:
        out.append(await http.read_body(receive, limit))

    run(scenario)
    return out[0]


def test_a_body_in_chunks_up_to_the_limit_is_read_whole():
    assert read(receiving(b"a" * 6, b"b" * 4), limit=10) == b"a" * 6 + b"b" * 4


def test_a_body_over_the_limit_is_request_too_large():
    with pytest.raises(AqtaError) as raised:
        read(receiving(b"a" * 6, b"b" * 5, b"never read"), limit=10)
    error = raised.value
    assert (error.code, error.status) == (ErrorCode.REQUEST_TOO_LARGE, 413)
    assert error.message == "Request body is larger than 10 bytes."


def test_a_client_leaving_while_sending_is_not_a_body():
    with pytest.raises(ConnectionResetError):
        read(receiving(b"{", disconnect=True), limit=10)
