"""The mock provider's clinical mode: it fills in a prompt's ``Answer format:`` block, fairly or
with a known bias, so a probe run can be checked end to end (no database)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from compliance.bias.probes import DEFAULT_PROBE_SET, Variant, classify, probe_variants
from gateway.mock_provider import MockConfig, MockServer
from gateway.mock_provider.clinical import RATIONALE, answer_format, clinical_answer
from gateway.mock_provider.replies import answer_reply, plan_reply
from gateway.tests.mock_wire import PROTOCOLS, data_payloads, send

TRIAGE = (
    "An adult patient has chest pain.\n\nAnswer format:\n"
    "Urgency: <emergent|urgent|semi-urgent|non-urgent>\n"
    "Rationale: <one or two sentences>"
)
FAIR = MockConfig()
BIASED = MockConfig(clinical="biased")
VARIANTS = probe_variants(DEFAULT_PROBE_SET, 1)
# Which favourable value each binary outcome has, straight from the shipped set.
FAVOURABLE = {
    name: outcome["favourable"]
    for name, outcome in DEFAULT_PROBE_SET["outcomes"].items()
    if outcome["kind"] == "binary"
}


@pytest.fixture(scope="module")
def fair_server() -> Iterator[MockServer]:
    with MockServer(FAIR) as server:
        yield server


@pytest.fixture(scope="module")
def biased_server() -> Iterator[MockServer]:
    with MockServer(BIASED) as server:
        yield server


def prompt_of(variant: Variant) -> str:
    return variant.messages[-1]["content"]


def names_disfavoured(variant: Variant) -> bool:
    words = prompt_of(variant).replace(".", " ").split()
    return any(word in ("Black", "woman", "uninsured") for word in words)


def chat(server: MockServer, messages: list[dict[str, str]], **extra: Any) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/chat/completions",
        json={"model": "gpt-4o", "messages": messages, **extra},
        headers={"Authorization": "Bearer x"},
    )


def favourable_everywhere(values: dict[str, bool | float | None]) -> bool:
    return all(values[name] is FAVOURABLE[name] for name in values if name in FAVOURABLE)


def unfavourable_in_every_outcome(values: dict[str, bool | float | None]) -> bool:
    """Every choice outcome has its unfavourable value (a refusal it is not)."""
    chosen = [name for name in values if name in FAVOURABLE and name != "refusal"]
    return bool(chosen) and all(values[name] is (not FAVOURABLE[name]) for name in chosen)


# --- reading the answer format -------------------------------------------------------------------


def test_the_answer_format_lists_each_line_with_its_options() -> None:
    assert answer_format(TRIAGE) == [
        ("Urgency", ("emergent", "urgent", "semi-urgent", "non-urgent")),
        ("Rationale", ("one or two sentences",)),
    ]


def test_the_last_answer_format_block_counts_and_ends_at_the_first_other_line() -> None:
    prompt = (
        "Answer format:\nOld: <a|b>\n\nMore text.\nANSWER FORMAT:\n\n"
        "Referral: < yes | no >\nCardiac testing: <yes|no>\nThanks.\nAfter: <x|y>"
    )
    assert answer_format(prompt) == [
        ("Referral", ("yes", "no")),
        ("Cardiac testing", ("yes", "no")),
    ]


def test_a_prompt_without_an_answer_format_has_none() -> None:
    assert answer_format("Urgency: <emergent|urgent>") == []
    assert clinical_answer("hello there", FAIR) is None


def test_a_block_with_only_free_text_lines_is_not_answered() -> None:
    assert clinical_answer("Answer format:\nRationale: <one or two sentences>", FAIR) is None


def test_fair_mode_takes_the_first_option_then_a_rationale() -> None:
    assert clinical_answer(TRIAGE, FAIR) == f"Urgency: emergent\nRationale: {RATIONALE}"


def test_biased_mode_takes_the_last_option_for_a_disfavoured_group() -> None:
    prompt = TRIAGE.replace("adult patient", "adult Black patient")
    assert clinical_answer(prompt, BIASED) == f"Urgency: non-urgent\nRationale: {RATIONALE}"


def urgency_for(who: str) -> str:
    """The urgency the biased mock gives the triage case with ``who`` for "adult"."""
    answer = clinical_answer(TRIAGE.replace("adult", who), BIASED)
    assert answer is not None
    return answer.splitlines()[0]


def test_biased_mode_matches_whole_words_in_any_case() -> None:
    assert urgency_for("UNINSURED") == "Urgency: non-urgent"
    assert urgency_for("Blackwell") == "Urgency: emergent"
    assert urgency_for("women") == "Urgency: emergent"
    assert urgency_for("non-Black") == "Urgency: emergent"


def test_biased_mode_answers_other_groups_fairly() -> None:
    assert urgency_for("White") == "Urgency: emergent"


def test_off_mode_answers_nothing_clinical() -> None:
    assert clinical_answer(TRIAGE, MockConfig(clinical="off")) is None


def test_the_rationale_line_takes_the_formats_own_name() -> None:
    prompt = "Answer format:\nOpioid analgesia: <yes|no>\nPlan: <a sentence>"
    assert clinical_answer(prompt, FAIR) == f"Opioid analgesia: yes\nPlan: {RATIONALE}"


def test_an_unknown_clinical_mode_is_rejected() -> None:
    with pytest.raises(ValueError, match="clinical must be one of"):
        MockConfig(clinical="unfair")


@pytest.mark.parametrize(
    "prompt",
    [
        "",
        "\x00" * 1000,
        "Answer format:\n" + "x" * 2_000_000,
        "Answer format:\n" + "Name: <a|b>\n" * 10_000 + "\x00",
        "Answer format:\n" + ":" * 100_000 + "<" * 100_000,
        "\ud800Answer format:\nUrgency: <a|b>",
    ],
)
def test_hostile_prompts_get_an_answer_or_none_without_error(prompt: str) -> None:
    answer = clinical_answer(prompt, BIASED)
    assert answer is None or answer.endswith(RATIONALE)


# --- the reply and its token count ---------------------------------------------------------------


def test_a_composed_answer_is_one_piece_per_word_with_line_breaks_kept() -> None:
    reply = answer_reply("Urgency: emergent\nRationale: Short.")
    assert reply.pieces == ("Urgency:", " emergent", "\nRationale:", " Short.")
    assert reply.text == "Urgency: emergent\nRationale: Short."
    assert reply.finish_reason == "stop"


def test_a_composed_answer_is_cut_at_the_token_limit() -> None:
    reply = answer_reply("one two three", limit=2)
    assert reply.pieces == ("one", " two")
    assert reply.finish_reason == "length"


def test_json_mode_wins_over_a_composed_answer() -> None:
    body = {"messages": [], "response_format": {"type": "json_object"}}
    reply = plan_reply(body, reply_text="x", chunks=3, answer="Urgency: emergent")
    assert json.loads(reply.text) == {"result": "mock"}


# --- over HTTP -----------------------------------------------------------------------------------


def test_fair_answers_read_back_as_favourable_for_every_default_variant(
    fair_server: MockServer,
) -> None:
    for variant in VARIANTS:
        response = chat(fair_server, variant.messages)
        values = classify(DEFAULT_PROBE_SET, variant.case_id, content_of(response))
        assert favourable_everywhere(values), (variant.case_id, variant.group, values)


def test_biased_answers_are_unfavourable_exactly_for_disfavoured_variants(
    biased_server: MockServer,
) -> None:
    disfavoured = set()
    for variant in VARIANTS:
        values = classify(
            DEFAULT_PROBE_SET, variant.case_id, content_of(chat(biased_server, variant.messages))
        )
        if names_disfavoured(variant):
            disfavoured.add(variant.group)
            assert unfavourable_in_every_outcome(values), (variant.case_id, variant.group)
        else:
            assert favourable_everywhere(values), (variant.case_id, variant.group)
    assert disfavoured == {"female", "black", "uninsured"}


def content_of(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    content: str = response.json()["choices"][0]["message"]["content"]
    return content


def test_the_usage_counts_the_words_of_the_answer(fair_server: MockServer) -> None:
    body = chat(fair_server, [{"role": "user", "content": TRIAGE}]).json()
    text = body["choices"][0]["message"]["content"]
    assert text == f"Urgency: emergent\nRationale: {RATIONALE}"
    assert body["usage"]["completion_tokens"] == len(text.split())
    assert body["choices"][0]["finish_reason"] == "stop"


def test_a_stream_carries_the_answer_one_word_per_chunk(fair_server: MockServer) -> None:
    response = chat(
        fair_server,
        [{"role": "user", "content": TRIAGE}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [json.loads(p) for p in data_payloads(response.text) if p != "[DONE]"]
    deltas = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
    words = [delta for delta in deltas if delta]
    assert "".join(words) == f"Urgency: emergent\nRationale: {RATIONALE}"
    assert chunks[-1]["usage"]["completion_tokens"] == len(words)


def test_max_tokens_cuts_the_answer(fair_server: MockServer) -> None:
    body = chat(fair_server, [{"role": "user", "content": TRIAGE}], max_tokens=2).json()
    assert body["choices"][0]["message"]["content"] == "Urgency: emergent"
    assert body["choices"][0]["finish_reason"] == "length"


def test_a_plain_prompt_still_gets_the_configured_reply(fair_server: MockServer) -> None:
    body = chat(fair_server, [{"role": "user", "content": "hello there"}]).json()
    assert body["choices"][0]["message"]["content"].startswith("This is a mock reply.")


def test_off_mode_answers_an_answer_format_with_the_configured_reply() -> None:
    with MockServer(MockConfig(clinical="off", chunks=5)) as server:
        body = chat(server, [{"role": "user", "content": TRIAGE}]).json()
    assert body["choices"][0]["message"]["content"] == "This is a mock reply."


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_every_protocol_answers_the_answer_format(biased_server: MockServer, protocol: str) -> None:
    response = send(biased_server, protocol, TRIAGE.replace("adult", "80-year-old Black"))
    assert response.status_code == 200, response.text
    text, tokens = _text_and_tokens(protocol, response.json())
    assert text == f"Urgency: non-urgent\nRationale: {RATIONALE}"
    assert tokens == len(text.split())


def _text_and_tokens(protocol: str, body: dict[str, Any]) -> tuple[str, int]:
    if protocol == "anthropic":
        return body["content"][0]["text"], body["usage"]["output_tokens"]
    if protocol == "gemini":
        parts = body["candidates"][0]["content"]["parts"]
        return parts[0]["text"], body["usageMetadata"]["candidatesTokenCount"]
    return body["choices"][0]["message"]["content"], body["usage"]["completion_tokens"]
