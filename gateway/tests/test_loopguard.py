"""The loop guard's request fingerprint and its check for repeating assistant turns."""

from __future__ import annotations

import itertools
import json
from typing import Any

from gateway.dataplane.loopguard import fingerprint, repeats_a_cycle

_ids = itertools.count(1)

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def system(text: str) -> dict:
    return {"role": "system", "content": text}


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


def tool_call(name: str, arguments: dict | str, call_id: str | None = None) -> dict:
    """An assistant turn calling one tool; ids differ per call, as real ones do."""
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments)
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": call_id or f"call_{next(_ids):04d}",
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            }
        ],
    }


def tool_result(call: dict, content: str) -> dict:
    return {"role": "tool", "tool_call_id": call["tool_calls"][0]["id"], "content": content}


def call_and_result(name: str, arguments: dict, content: str) -> list[dict]:
    call = tool_call(name, arguments)
    return [call, tool_result(call, content)]


# --- fingerprint --------------------------------------------------------------------------


def test_fingerprint_ignores_whitespace_in_message_text():
    tidy = [system("You are terse."), user("What is the capital of France?")]
    messy = [system("  You are\tterse. "), user("What is  the capital\nof France?  ")]

    assert fingerprint("gpt-4o", tidy, None) == fingerprint("gpt-4o", messy, None)


def test_fingerprint_ignores_key_order_and_spacing_of_tool_call_arguments():
    first = tool_call("search", '{"query": "paris hotels", "filters": {"stars": 4, "pool": true}}')
    second = tool_call("search", '{"filters":{"pool":true,"stars":4},"query":"paris hotels"}')

    assert fingerprint("gpt-4o", [user("Find a hotel"), first], None) == fingerprint(
        "gpt-4o", [user("Find a hotel"), second], None
    )


def test_fingerprint_ignores_tool_call_ids():
    one = tool_call("get_weather", {"city": "Paris"}, call_id="call_abc")
    other = tool_call("get_weather", {"city": "Paris"}, call_id="call_xyz")

    assert fingerprint("gpt-4o", [one], None) == fingerprint("gpt-4o", [other], None)


def test_fingerprint_differs_by_model():
    messages = [user("Hello")]

    assert fingerprint("gpt-4o", messages, None) != fingerprint("gpt-4o-mini", messages, None)


def test_fingerprint_differs_by_message_text():
    assert fingerprint("gpt-4o", [user("Hello")], None) != fingerprint(
        "gpt-4o", [user("Goodbye")], None
    )


def test_fingerprint_differs_by_role():
    assert fingerprint("gpt-4o", [user("Hello")], None) != fingerprint(
        "gpt-4o", [system("Hello")], None
    )


def test_fingerprint_differs_by_tool_call_arguments():
    paris = [tool_call("get_weather", {"city": "Paris"})]
    rome = [tool_call("get_weather", {"city": "Rome"})]

    assert fingerprint("gpt-4o", paris, None) != fingerprint("gpt-4o", rome, None)


def test_fingerprint_differs_by_tools():
    messages = [user("What's the weather in Paris?")]
    other_tool = {**WEATHER_TOOL, "function": {**WEATHER_TOOL["function"], "name": "forecast"}}

    with_tool = fingerprint("gpt-4o", messages, [WEATHER_TOOL])
    assert with_tool != fingerprint("gpt-4o", messages, None)
    assert with_tool != fingerprint("gpt-4o", messages, [other_tool])


def test_fingerprint_differs_by_a_tool_result():
    call = tool_call("get_weather", {"city": "Paris"})
    sunny = [call, tool_result(call, '{"temp_c": 21}')]
    rainy = [call, tool_result(call, '{"temp_c": 9}')]

    assert fingerprint("gpt-4o", sunny, None) != fingerprint("gpt-4o", rainy, None)


# --- repeating cycles: runaway agents -----------------------------------------------------


def test_the_same_tool_call_three_times_in_a_row_is_a_cycle():
    messages = [user("What's the weather in Paris?")] + [
        tool_call("get_weather", {"city": "Paris"}) for _ in range(3)
    ]

    assert repeats_a_cycle(messages)


def test_the_same_tool_call_three_times_between_tool_results_is_a_cycle():
    messages = [system("You are a travel agent."), user("What's the weather in Paris?")]
    for _ in range(3):
        messages += call_and_result("get_weather", {"city": "Paris"}, '{"error": "timeout"}')

    assert repeats_a_cycle(messages)


def test_the_same_call_with_arguments_reordered_is_still_the_same_call():
    messages = [user("Book it")]
    for arguments in (
        '{"hotel": "H1", "nights": 2}',
        '{"nights":2,"hotel":"H1"}',
        '{"hotel":"H1","nights":2}',
    ):
        call = tool_call("book", arguments)
        messages += [call, tool_result(call, "error: card declined")]

    assert repeats_a_cycle(messages)


def test_the_same_assistant_text_three_times_is_a_cycle():
    messages = [user("Write the report.")]
    for _ in range(3):
        messages += [assistant("I will now write the report."), user("Continue.")]

    assert repeats_a_cycle(messages)


def test_the_same_text_differing_only_in_case_and_spacing_is_a_cycle():
    messages = [
        assistant("Let me check that for you."),
        assistant("let me check  that for you."),
        assistant("Let me check that for you. "),
    ]

    assert repeats_a_cycle(messages)


def test_an_a_b_a_b_a_b_cycle_is_detected():
    messages = [user("Deploy the service.")]
    for _ in range(3):
        messages += call_and_result("deploy", {"service": "api"}, "failed: health check")
        messages += call_and_result("rollback", {"service": "api"}, "rolled back")

    assert repeats_a_cycle(messages)


def test_an_a_b_c_cycle_three_times_is_detected():
    messages = [user("Sync the mailbox.")]
    for _ in range(3):
        messages += call_and_result("login", {"user": "bob"}, "ok")
        messages += call_and_result("fetch", {"folder": "INBOX"}, "session expired")
        messages += call_and_result("logout", {}, "ok")

    assert repeats_a_cycle(messages)


def test_a_cycle_counts_only_at_the_end_of_the_conversation():
    messages = [user("What's the weather in Paris?")]
    for _ in range(3):
        messages += call_and_result("get_weather", {"city": "Paris"}, '{"error": "timeout"}')
    messages += call_and_result("get_weather", {"city": "Paris", "retry": True}, '{"temp_c": 21}')
    messages += [assistant("It is 21 °C in Paris."), user("Thanks! And in Rome?")]

    assert not repeats_a_cycle(messages)


# --- not a cycle --------------------------------------------------------------------------


def test_two_repeats_are_not_a_cycle():
    messages = [user("What's the weather in Paris?")]
    for _ in range(2):
        messages += call_and_result("get_weather", {"city": "Paris"}, '{"error": "timeout"}')

    assert not repeats_a_cycle(messages)


def test_two_a_b_repeats_are_not_a_cycle():
    messages = [user("Deploy the service.")]
    for _ in range(2):
        messages += call_and_result("deploy", {"service": "api"}, "failed")
        messages += call_and_result("rollback", {"service": "api"}, "rolled back")

    assert not repeats_a_cycle(messages)


def test_the_same_tool_with_different_arguments_is_not_a_cycle():
    messages = [user("Compare the weather in three capitals.")]
    for city in ("Paris", "Rome", "Madrid"):
        messages += call_and_result("get_weather", {"city": city}, '{"temp_c": 20}')

    assert not repeats_a_cycle(messages)


def test_paging_through_results_is_not_a_cycle():
    messages = [user("List all open invoices.")]
    for page in range(1, 6):
        messages += call_and_result("list_invoices", {"status": "open", "page": page}, "[...]")

    assert not repeats_a_cycle(messages)


def test_an_everyday_multi_turn_chat_is_not_a_cycle():
    messages = [
        system("You are a helpful assistant."),
        user("I'm going to Lisbon for a long weekend in May. Any tips?"),
        assistant(
            "Lisbon in May is lovely: around 22 °C. Walk Alfama early in the morning, "
            "take tram 28 before 9am to avoid queues, and try pastéis de nata in Belém."
        ),
        user("What about day trips?"),
        assistant(
            "Sintra is the classic (40 minutes by train from Rossio): Pena Palace and "
            "Quinta da Regaleira. Cascais is a relaxed beach town on the coast line."
        ),
        user("Is Sintra doable without a car?"),
        assistant(
            "Yes. Trains run every 20 minutes, and the 434 bus loops between the "
            "station and the palaces. Buy palace tickets online the day before."
        ),
        user("Great. How much should I budget per day?"),
        assistant(
            "Roughly 80-120 EUR per person excluding the hotel: about 30 for food, 20 "
            "for transport and tickets, and the rest for a nice dinner or fado show."
        ),
        user("Thanks, that's really helpful!"),
        assistant("You're welcome. Enjoy Lisbon!"),
        user("One more thing: which neighbourhood should I stay in?"),
    ]

    assert not repeats_a_cycle(messages)


def test_a_user_repeating_a_question_with_different_answers_is_not_a_cycle():
    question = "Can you explain what a monad is?"
    messages = [
        user(question),
        assistant(
            "A monad is a design pattern that wraps values and lets you chain "
            "operations on them with a bind function, handling context such as failure."
        ),
        user(question),
        assistant(
            "Think of a monad as a box with rules: `return` puts a value in the box and "
            "`bind` applies a function that itself returns a box, without unpacking by hand."
        ),
        user(question),
        assistant(
            "Concretely: Maybe is a monad. `Just 3 >>= half` either continues with a value "
            "or short-circuits to Nothing, so you never write the null checks yourself."
        ),
        user(question),
    ]

    assert not repeats_a_cycle(messages)


def test_a_long_coding_conversation_is_not_a_cycle():
    messages = [
        system("You are a coding agent working in the user's repository."),
        user("The test suite fails on main. Can you find out why and fix it?"),
        *call_and_result(
            "run_tests", {}, "FAILED tests/test_dates.py::test_parse_iso - ValueError"
        ),
        *call_and_result("read_file", {"path": "tests/test_dates.py"}, "def test_parse_iso(): ..."),
        *call_and_result("read_file", {"path": "app/dates.py"}, "def parse_iso(s): ..."),
        assistant(
            "`parse_iso` rejects timestamps ending in `Z`: `fromisoformat` only accepts "
            "them from Python 3.11 on, and CI runs 3.10. I'll normalise the suffix."
        ),
        *call_and_result(
            "edit_file",
            {
                "path": "app/dates.py",
                "old": "fromisoformat(s)",
                "new": "fromisoformat(s[:-1] + '+00:00')",
            },
            "ok",
        ),
        *call_and_result("run_tests", {}, "FAILED tests/test_dates.py::test_parse_naive"),
        *call_and_result(
            "read_file", {"path": "tests/test_dates.py"}, "def test_parse_naive(): ..."
        ),
        *call_and_result(
            "edit_file",
            {
                "path": "app/dates.py",
                "old": "fromisoformat(s[:-1] + '+00:00')",
                "new": "fromisoformat(s.removesuffix('Z') + ('+00:00' if s.endswith('Z') else ''))",
            },
            "ok",
        ),
        *call_and_result("run_tests", {}, "212 passed in 9.81s"),
        assistant(
            "All 212 tests pass. The fix only rewrites a trailing `Z`, so naive timestamps "
            "keep parsing as before."
        ),
        user("Nice. Can you also add a regression test for the Z suffix?"),
        *call_and_result("read_file", {"path": "tests/test_dates.py"}, "import pytest ..."),
        *call_and_result(
            "edit_file",
            {"path": "tests/test_dates.py", "old": "", "new": "def test_parse_zulu(): ..."},
            "ok",
        ),
        *call_and_result("run_tests", {"path": "tests/test_dates.py"}, "7 passed in 0.12s"),
        assistant("Added `test_parse_zulu`; the date tests pass (7 passed)."),
        user("Run the whole suite once more before I merge, please."),
        *call_and_result("run_tests", {}, "213 passed in 9.90s"),
        assistant("213 passed. Ready to merge."),
        user("Thanks! Open a pull request with a short description."),
        *call_and_result(
            "create_pull_request",
            {"title": "Parse ISO timestamps with a Z suffix", "body": "Fixes CI on 3.10."},
            '{"number": 481}',
        ),
    ]

    assert not repeats_a_cycle(messages)


def test_different_legacy_function_calls_are_not_a_cycle():
    messages = [user("Plan my day in Paris.")]
    for name, arguments in (
        ("get_weather", '{"city": "Paris"}'),
        ("find_museums", '{"city": "Paris", "open_now": true}'),
        ("book_table", '{"restaurant": "Le Comptoir", "time": "20:00"}'),
    ):
        messages += [
            {
                "role": "assistant",
                "content": None,
                "function_call": {"name": name, "arguments": arguments},
            },
            {"role": "function", "name": name, "content": "ok"},
        ]

    assert not repeats_a_cycle(messages)


def test_acknowledging_a_document_sent_in_parts_is_not_a_cycle():
    messages = [
        user(
            "I'll paste a contract in three parts. Reply only with OK after each part; "
            "then I'll ask my questions."
        ),
        assistant("OK"),
        user("Part 1/3: This Agreement is made between Acme GmbH and ..."),
        assistant("OK"),
        user("Part 2/3: 4. Termination. Either party may terminate ..."),
        assistant("OK"),
        user("Part 3/3: 9. Governing law. This Agreement is governed by ..."),
        assistant("OK"),
        user("Which notice period applies if Acme terminates for convenience?"),
    ]

    assert not repeats_a_cycle(messages)
