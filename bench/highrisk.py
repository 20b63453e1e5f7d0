"""CPU per high-risk evaluation of a /v1 request with the default rules (healthcare.highrisk).

    .venv/bin/python -m bench.highrisk            # a few seconds
    .venv/bin/python -m bench.highrisk --quick

Requests: a typical 2 KB one (a system prompt and a few turns of a clinical assistant,
nothing high-risk in it, so every rule reads all of it: the worst case for its size), the
same with a high-risk question at the end, and a 100 KB one (a pasted document of
discharge notes and a question). Rows: extracting the text (``request_text``), scanning it
(``scan``, the rules already compiled), both; and compiling the default set once.
``time.process_time`` over many calls after one warm-up call; microseconds per call.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from healthcare import highrisk
from healthcare.highrisk_defaults import DEFAULT_RULES

SYSTEM = (
    "You are a careful assistant for the staff of a general practice. Answer briefly, "
    "cite the practice's guidance where it applies, and never invent patient details. "
)
TURNS = [
    "Can you summarise the practice's opening hours for the bank holiday weekend?",
    "The surgery is open on Saturday from 9 to 12; on Monday it is closed. Calls go to "
    "the out-of-hours service.",
    "Thanks. Please draft a short note for the waiting-room screen about flu vaccination "
    "clinics in October, mentioning that booking is online or at reception.",
    "Flu vaccination clinics run every Tuesday and Thursday in October. Book online or "
    "at reception; bring your NHS number if you have it.",
]


def typical(question: str = "Could you make it a little friendlier?") -> dict:
    """About 2 KB of JSON: a system prompt, four turns repeated twice, a question."""
    messages = [{"role": "system", "content": SYSTEM * 2}]
    for turn in range(8):
        role = "user" if turn % 2 == 0 else "assistant"
        messages.append({"role": role, "content": TURNS[turn % 4]})
    messages.append({"role": "user", "content": question})
    return {"model": "gpt-4o-mini", "messages": messages}


def large(question: str = "Which of these follow-ups are overdue?") -> dict:
    """About 100 KB: discharge notes pasted as one message, then a question."""
    note = (
        "Patient seen in clinic for routine follow-up. Observations within normal limits. "
        "Discussed diet and exercise; leaflet given. Next review in twelve months. "
    )
    document = note * (100_000 // len(note))
    return {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": [{"type": "text", "text": document}]},
            {"role": "user", "content": question},
        ],
    }


def per_call(fn: Callable[[], object], iterations: int) -> float:
    fn()
    start = time.process_time()
    for _ in range(iterations):
        fn()
    return (time.process_time() - start) / iterations * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = 200 if args.quick else 2000
    rules = DEFAULT_RULES
    dose = "What is the max dose of paracetamol?"
    bodies = {
        "2 KB, nothing high-risk": (typical(), n),
        "2 KB, ends in a dose question": (typical(dose), n),
        "100 KB, nothing high-risk": (large(), n // 20),
        "100 KB, ends in a dose question": (large(dose), n // 20),
    }
    start = time.process_time()
    highrisk.compile.cache_clear()
    highrisk._regex.cache_clear()
    highrisk.compile(rules)
    compile_us = (time.process_time() - start) * 1e6
    print(f"default rules: {len(rules)}; compiling them once: {compile_us:,.0f} us\n")
    print(f"{'request':<32} {'text chars':>10} {'extract us':>11} {'scan us':>9} {'total us':>9}")
    for label, (body, iterations) in bodies.items():
        text = highrisk.request_text(body)

        def extract_only(body: dict = body) -> object:
            return highrisk.request_text(body)

        def scan_only(text: str = text) -> object:
            return highrisk.scan(rules, text, "request")

        def both(body: dict = body) -> object:
            return highrisk.scan(rules, highrisk.request_text(body), "request")

        extract = per_call(extract_only, iterations)
        scan = per_call(scan_only, iterations)
        total = per_call(both, iterations)
        print(f"{label:<32} {len(text):>10,} {extract:>11.1f} {scan:>9.1f} {total:>9.1f}")


if __name__ == "__main__":
    main()
