"""The text the high-risk evaluator reads: ``request_text`` and ``response_text``."""

from __future__ import annotations

import pytest

from healthcare import highrisk
from healthcare.highrisk import MAX_SCAN_CHARS, request_text, scan
from healthcare.highrisk_defaults import DEFAULT_RULES


def categories(text, where="request"):
    return {match.category for match in scan(DEFAULT_RULES, text, where)}


# --- the text of a request --------------------------------------------------------------


def test_request_text_reads_every_message_and_text_part():
    body = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "system words"},
            {"role": "developer", "content": [{"type": "text", "text": "developer words"}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "user words"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,chest pain"}},
                    {"type": "input_audio", "input_audio": {"data": "chest pain"}},
                ],
            },
            {"role": "assistant", "content": "assistant words"},
            {"role": "tool", "content": "tool words", "tool_call_id": "x"},
        ],
    }
    text = request_text(body)
    assert text.split("\n") == [
        "system words",
        "developer words",
        "user words",
        "assistant words",
        "tool words",
    ]
    assert "chest pain" not in text


@pytest.mark.parametrize(
    "body",
    [
        None,
        "chest pain",
        ["chest pain"],
        {},
        {"messages": "chest pain"},
        {"messages": {"content": "chest pain"}},
        {"messages": [None, 1, "chest pain", ["chest pain"]]},
        {"messages": [{"content": None}, {"content": 5}, {"content": {"text": "chest pain"}}]},
        {"messages": [{"content": [None, "chest pain", {"type": "text", "text": 5}]}]},
        {"messages": [{"content": [{"type": "text"}, {"text": "chest pain"}]}]},
        {"messages": [{"content": [{"type": ["text"], "text": "chest pain"}]}]},
    ],
)
def test_request_text_ignores_what_is_not_text(body):
    assert "chest pain" not in request_text(body)


def test_request_text_of_a_deeply_nested_body_does_not_recurse():
    nested: dict = {"content": "chest pain"}
    for _ in range(10_000):
        nested = {"content": [nested]}
    assert request_text({"messages": [nested]}) == ""


def test_request_text_is_bounded_to_its_beginning_and_end():
    messages = [{"role": "user", "content": "x" * 1000} for _ in range(2000)]
    messages[0]["content"] = "FIRST"
    messages[-1]["content"] = "LAST"
    text = request_text({"messages": messages})
    assert len(text) <= MAX_SCAN_CHARS
    assert text.startswith("FIRST\n") and text.endswith("\nLAST")


def test_request_text_keeps_a_huge_single_message_bounded():
    text = request_text({"messages": [{"content": "a" * (4 * MAX_SCAN_CHARS) + "END"}]})
    assert len(text) <= MAX_SCAN_CHARS
    assert text.endswith("END")


# --- the text of an answer --------------------------------------------------------------


def test_response_text_of_a_completion():
    answer = {
        "object": "chat.completion",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "Take 500 mg."}},
            {"index": 1, "message": {"role": "assistant", "content": None, "refusal": "No."}},
            {
                "index": 2,
                "message": {
                    "content": None,
                    "tool_calls": [
                        {"function": {"name": "prescribe", "arguments": '{"dose": "5 mg"}'}}
                    ],
                },
            },
        ],
    }
    text = highrisk.response_text(answer)
    assert text.split("\n") == ["Take 500 mg.", "No.", '{"dose": "5 mg"}']


def test_response_text_puts_a_stream_back_together():
    chunks = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "You have chest p"}}]},
        {"choices": [{"index": 0, "delta": {"content": "ain; call"}}]},
        {"choices": [{"index": 0, "delta": {"content": " 911."}, "finish_reason": "stop"}]},
        {"choices": [], "usage": {"prompt_tokens": 3}},
    ]
    text = highrisk.response_text(chunks)
    assert text == "You have chest pain; call 911."
    assert categories(text, "response") == {"triage"}


def test_response_text_puts_streamed_tool_arguments_back_together():
    chunks = [
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"a'}}]}}]},
        {
            "choices": [
                {"delta": {"tool_calls": [{"index": 0, "function": {"arguments": '": 1}'}}]}}
            ]
        },
    ]
    assert highrisk.response_text(chunks) == '{"a": 1}'


@pytest.mark.parametrize(
    "answer",
    [
        None,
        "chest pain",
        [None, "chest pain", 3],
        {"choices": "chest pain"},
        {"choices": [None, "chest pain", {"message": "chest pain"}]},
        {"choices": [{"message": {"content": 5, "refusal": 6, "tool_calls": "chest pain"}}]},
        {"choices": [{"message": {"tool_calls": [None, {"function": "chest pain"}]}}]},
        {"choices": [{"index": [1], "delta": {"tool_calls": [{"index": {}, "function": {}}]}}]},
    ],
)
def test_response_text_ignores_what_is_not_text(answer):
    assert "chest pain" not in highrisk.response_text(answer)
