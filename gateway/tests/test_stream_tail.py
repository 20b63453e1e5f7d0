"""The end of a stream: finish chunk held until usage, aqta on it, usage chunk if asked."""

from __future__ import annotations

import orjson

from gateway.dataplane.stream_tail import StreamTail

ENVELOPE = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
AQTA = {"trace_id": "tr_" + "0" * 32, "cost_eur": 0.5}
USAGE = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


def event(chunk: dict, spaced: bool = False) -> bytes:
    data = orjson.dumps(chunk)
    return b"data: " + (data.replace(b'":', b'": ') if spaced else data) + b"\n\n"


def choice(index: int, content: str | None = None, finish: str | None = None) -> bytes:
    delta = {"content": content} if content is not None else {}
    chunk = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
    return event({**ENVELOPE, "choices": [chunk]})


def usage_event() -> bytes:
    return event({**ENVELOPE, "choices": [], "usage": USAGE})


def chunks(raw: bytes) -> list[dict]:
    return [orjson.loads(e[6:]) for e in raw.split(b"\n\n") if e and e != b"data: [DONE]"]


def test_the_finish_chunk_waits_for_the_usage_and_carries_aqta():
    tail = StreamTail(include_usage=False)

    assert tail.feed([choice(0, "Hi"), choice(0, finish="stop")]) == [choice(0, "Hi")]
    assert tail.feed([usage_event()]) == []
    end = tail.close(AQTA, ENVELOPE, USAGE)

    [finish] = chunks(end)
    assert finish["choices"][0]["finish_reason"] == "stop" and finish["aqta"] == AQTA
    assert end.endswith(b"data: [DONE]\n\n")


def test_the_usage_chunk_comes_last_with_aqta_when_asked_for():
    tail = StreamTail(include_usage=True)
    tail.feed([choice(0, "Hi"), choice(0, finish="stop"), usage_event()])

    finish, usage = chunks(tail.close(AQTA, ENVELOPE, USAGE))

    assert finish["aqta"] == usage["aqta"] == AQTA
    assert usage["choices"] == [] and usage["usage"] == USAGE


def test_with_several_choices_aqta_rides_on_the_last_finish():
    tail = StreamTail(include_usage=False)
    forwarded = tail.feed(
        [choice(0, "a"), choice(1, "b"), choice(0, finish="stop"), choice(1, "c")]
    )
    forwarded += tail.feed([choice(1, finish="length"), usage_event()])

    assert forwarded == [choice(0, "a"), choice(1, "b"), choice(0, finish="stop"), choice(1, "c")]
    [last] = chunks(tail.close(AQTA, ENVELOPE, USAGE))
    assert last["choices"][0] == {
        "index": 1, "delta": {}, "logprobs": None, "finish_reason": "length"
    }  # fmt: skip
    assert last["aqta"] == AQTA


def test_pretty_printed_json_is_read_too():
    tail = StreamTail(include_usage=True)
    spaced_finish = event(
        {**ENVELOPE, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}, True
    )

    assert (
        tail.feed([spaced_finish, event({**ENVELOPE, "choices": [], "usage": USAGE}, True)]) == []
    )
    finish, usage = chunks(tail.close(AQTA, ENVELOPE, USAGE))
    assert finish["choices"][0]["finish_reason"] == "stop" and usage["usage"] == USAGE


def test_a_stream_without_a_finish_chunk_gets_one_and_a_usage_chunk_from_the_counts():
    tail = StreamTail(include_usage=True)
    tail.feed([choice(0, "Hi")])

    finish, usage = chunks(tail.close(AQTA, ENVELOPE, USAGE))

    assert finish == {
        **ENVELOPE,
        "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}],
        "aqta": AQTA,
    }
    assert usage == {**ENVELOPE, "choices": [], "usage": USAGE, "aqta": AQTA}


def test_a_cut_stream_releases_the_held_chunk_unchanged():
    tail = StreamTail(include_usage=False)
    tail.feed([choice(0, "Hi", finish="length")])

    assert tail.cut() == choice(0, "Hi", finish="length")
