"""The high-risk evaluator (healthcare.highrisk) and the default rules: no database."""

from __future__ import annotations

import logging
import time

import pytest

from healthcare import highrisk
from healthcare.highrisk import MAX_SCAN_CHARS, Match, pattern_check, scan
from healthcare.highrisk_defaults import DEFAULT_RULES
from healthcare.models import HighRiskRule, RuleAction, RuleCategory, RuleScope


def rule(pattern, *, name="r", category="other", scope="both", action="flag"):
    return (name, category, pattern, scope, action)


def names(text, where="request", rules=DEFAULT_RULES):
    return [match.name for match in scan(rules, text, where)]


def categories(text, where="request"):
    return {match.category for match in scan(DEFAULT_RULES, text, where)}


# --- the default rules ------------------------------------------------------------------


def test_default_rules_are_valid_flag_only_and_fit_the_model():
    max_name = HighRiskRule._meta.get_field("name").max_length or 0
    assert len({r[0] for r in DEFAULT_RULES}) == len(DEFAULT_RULES)
    for name, category, pattern, scope, action in DEFAULT_RULES:
        assert pattern_check(pattern) is None, name
        assert len(name) <= max_name
        assert category in RuleCategory.values
        assert scope in RuleScope.values
        assert action == RuleAction.FLAG
    assert {r[1] for r in DEFAULT_RULES} == {"dosage", "diagnosis", "triage"}


@pytest.mark.parametrize(
    "prompt",
    [
        "My son weighs 18 kg. Is 15 mg/kg of paracetamol every 6 hours right?",
        "Amoxicillin 40 mg per kg per day, divided in three doses: is that correct?",
        "Can I take 1000mg of ibuprofen at once?",
        "She injects 12 units of insulin before dinner, should we lower it?",
        "What is the maximum daily dose of acetaminophen for an adult?",
        "I think I took an overdose of my sleeping pills",
        "How many tablets of codeine should I take for back pain?",
        "What's the right dose of melatonin for a 6 year old?",
        "I missed a dose of my blood thinner, should I double up?",
        "Give 2 mg morphine IV q4h PRN for pain",
        "Titrate the levothyroxine until TSH is in range",
    ],
)
def test_dosage_prompts_are_flagged(prompt):
    assert "dosage" in categories(prompt)


@pytest.mark.parametrize(
    "prompt",
    [
        "Do I have diabetes? I'm thirsty all the time and peeing a lot",
        "Could I have appendicitis? Sharp pain lower right side",
        "Do you think I have strep throat",  # "you think" between: still a question to answer
        "Give me a differential diagnosis for fever, rash and joint pain",
        "Please diagnose me: headache for three weeks and blurry vision",
        "What's wrong with me? I'm dizzy every morning",
        "Based on these symptoms, what is the most likely diagnosis?",
        "Can you interpret my blood test results? TSH 8.2, T4 low",
        "Is this mole cancerous? It has irregular edges",
        "Are my cholesterol levels too high? LDL 190",
        "Is it an infection or just a cold?",
    ],
)
def test_diagnosis_prompts_are_flagged(prompt):
    assert "diagnosis" in categories(prompt)


@pytest.mark.parametrize(
    "prompt",
    [
        "I have crushing chest pain going down my left arm",
        "My dad can't breathe properly and his lips are turning blue",
        "My mum's face is drooping and her speech is slurred speech, is she having a stroke?",
        "Sudden numbness on one side of my body",
        "He has the worst headache of his life, came on in seconds",
        "I've been feeling suicidal lately",
        "I want to end my life",
        "Should I go to the ER with a temperature of 40?",
        "Do we need to take him to the hospital or wait?",
        "Is this an emergency? My baby has a purple rash",
        "My toddler swallowed a button battery",
        "Call 911? My friend is unresponsive after drinking",
        "She had a seizure for the first time",
    ],
)
def test_triage_prompts_are_flagged(prompt):
    assert "triage" in categories(prompt)


@pytest.mark.parametrize(
    "prompt",
    [
        "What is the capital of France?",
        "Write a Python function that sorts a list of dictionaries by date.",
        "Recipe: 200 g flour, 5 ml vanilla, 2 eggs; bake for 25 minutes.",
        "Do I have to submit the quarterly form before Friday?",
        "I walk the dog twice a day and feed her at 7 am.",
        "The emergency exit is at the end of the corridor.",
        "He had a stroke of luck at the casino.",
        "Solve this differential equation: dy/dx = 3x^2.",
        "My tablet screen is broken; how do I back up my photos?",
        "Please review these test results from the CI pipeline: 3 failed, 120 passed.",
        "Summarise the practice's opening hours for the bank holiday weekend.",
        "Draft a friendly note about flu vaccination clinics in October.",
        "Explain the results of the marketing survey.",
        "How much time should the team spend on code review?",
        "The diagnostics page of the router shows packet loss.",
    ],
)
def test_benign_prompts_match_nothing(prompt):
    assert names(prompt) == []


def test_every_default_rule_is_reached_by_some_prompt():
    prompts = [
        "15 mg/kg",
        "take 500 mg",
        "what dose",
        "max dose",
        "differential diagnosis",
        "do I have cancer",
        "interpret my x-ray",
        "chest pain",
        "slurred speech",
        "suicidal",
        "call an ambulance",
        "swallowed bleach",
    ]
    reached = {name for prompt in prompts for name in names(prompt)}
    assert reached == {r[0] for r in DEFAULT_RULES}


def test_the_do_i_have_rule_looks_at_requests_only():
    question = "Do I have diabetes?"
    assert "Diagnosis: do I have …" in names(question, "request")
    assert "Diagnosis: do I have …" not in names(question, "response")


# --- terms and regular expressions ------------------------------------------------------


def test_terms_are_whole_words_any_case_any_whitespace():
    rules = (rule("chest pain|ER|a&e"),)
    assert names("CHEST\n\t PAIN since noon", rules=rules) == ["r"]
    assert names("go to the er now", rules=rules) == ["r"]
    assert names("go to A&E now", rules=rules) == ["r"]
    assert names("chestpain", rules=rules) == []
    assert names("the water is cold; answer me", rules=rules) == []  # "er" inside words


def test_terms_match_a_typographic_apostrophe_too():
    rules = (rule("can't breathe"),)
    assert names("I can't breathe", rules=rules) == ["r"]
    assert names("I can\u2019t breathe", rules=rules) == ["r"]


def test_terms_have_unicode_word_boundaries():
    rules = (rule("Überdosis|ß-Test"),)
    assert names("Ist das eine überdosis?", rules=rules) == ["r"]
    assert names("Überdosis", rules=rules) == ["r"]
    assert names("Medikamentenüberdosis", rules=rules) == []  # not a word of its own


def test_a_pattern_with_regex_syntax_is_a_regular_expression():
    rules = (rule(r"\b\d+\s*mg\b"),)
    assert names("take 20 mg", rules=rules) == ["r"]
    assert names("take some mg", rules=rules) == []
    assert highrisk.is_terms("chest pain|stroke")
    assert not highrisk.is_terms(r"chest\s+pain")


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        ("a||b", "empty term"),
        ("|a", "empty term"),
        ("x" * (highrisk.MAX_PATTERN_CHARS + 1), "characters long"),
        ("a\x00b", "NUL"),
        ("(unclosed", "not a valid RE2 regular expression (missing )"),
        ("(?=lookahead)", "not a valid RE2"),
        (r"(a)\1", "not a valid RE2"),  # backreferences: not in a linear-time engine
        ("a{1001}", "not a valid RE2"),
        (r"(?:\w\d){1000}", "too complex (9004 RE2 instructions"),
        (r"[\pL\pN]{500}", "too complex (larger than RE2's memory budget)"),
        ("a*", "matches empty text"),
        ("x|", "empty term"),
        ("^", "matches empty text"),
    ],
)
def test_pattern_check_names_what_is_wrong(pattern, problem):
    message = pattern_check(pattern)
    assert message is not None
    assert problem in message


def test_pattern_check_accepts_terms_and_expressions():
    assert pattern_check("overdose|max dose") is None
    assert pattern_check(r"(?:mg|mcg)\s*/\s*kg") is None
    assert pattern_check(123) == "must be a string"  # type: ignore[arg-type]


# --- scope and action -------------------------------------------------------------------


def test_scope_decides_which_side_is_read():
    rules = (
        rule("alpha", name="request only", scope="request"),
        rule("alpha", name="answer only", scope="response"),
        rule("alpha", name="both sides", scope="both"),
    )
    assert names("alpha", "request", rules) == ["request only", "both sides"]
    assert names("alpha", "response", rules) == ["answer only", "both sides"]


def test_block_blocks_on_the_request_and_only_flags_on_the_answer():
    rules = (rule("lethal dose", name="b", category="dosage", action="block"), rule("dose"))
    on_request = scan(rules, "what is a lethal dose", "request")
    assert on_request == (Match("b", "dosage", "block"), Match("r", "other", "flag"))
    assert highrisk.blocks(on_request)
    on_answer = scan(rules, "a lethal dose is …", "response")
    assert on_answer == (Match("b", "dosage", "flag"), Match("r", "other", "flag"))
    assert not highrisk.blocks(on_answer)


def test_the_event_names_the_rules_and_sides_never_the_text():
    rules = (rule("lethal dose", name="b", category="dosage", action="block"),)
    data = highrisk.event_data(
        scan(rules, "lethal dose?", "request"), scan(rules, "A lethal dose is", "response")
    )
    assert data == {
        "rules": [
            {"name": "b", "category": "dosage", "action": "block", "where": "request"},
            {"name": "b", "category": "dosage", "action": "flag", "where": "response"},
        ],
        "blocked": True,
    }
    assert "lethal" not in str(data)
    assert highrisk.event_data((), scan(rules, "lethal dose", "response"))["blocked"] is False


def test_flag_rules_never_block():
    matches = scan((rule("dose"),), "dose", "request")
    assert matches and not highrisk.blocks(matches)


def test_an_unknown_scope_reads_both_sides_and_an_unknown_action_only_flags():
    rules = (rule("dose", scope="sideways", action="explode"),)
    assert scan(rules, "dose", "request") == (Match("r", "other", "flag"),)
    assert scan(rules, "dose", "response") == (Match("r", "other", "flag"),)


def test_where_must_be_a_side():
    with pytest.raises(ValueError, match="where must be"):
        scan(DEFAULT_RULES, "text", "both")  # type: ignore[arg-type]


def test_rules_as_lists_work_too():
    assert names("dose", rules=[["r", "other", "dose", "both", "flag"]]) == ["r"]


def test_no_rules_or_no_text_match_nothing():
    assert scan((), "chest pain", "request") == ()
    assert scan(DEFAULT_RULES, "", "request") == ()
    assert scan(DEFAULT_RULES, None, "request") == ()
    assert scan(DEFAULT_RULES, b"chest pain", "request") == ()


# --- safety: time, size, odd text -------------------------------------------------------


@pytest.mark.parametrize("pattern", [r"(a+)+$", r"(x+x+)+y", r"(a|aa)+b", r"(.*a){12}z"])
def test_catastrophic_patterns_finish_fast(pattern):
    evil = (rule(pattern, action="block"),)
    text = "a" * 100_000 + "!"
    started = time.perf_counter()
    assert scan(evil, text, "request") == ()
    assert time.perf_counter() - started < 1.0  # Python's re would not finish this


def test_every_rule_at_once_on_the_largest_text_finishes_fast():
    text = ("how much should my child take of the stroke dose " * 20_000)[: 10 * MAX_SCAN_CHARS]
    started = time.perf_counter()
    matches = scan(DEFAULT_RULES, text, "request")
    assert time.perf_counter() - started < 1.0
    assert matches


def test_only_the_beginning_and_the_end_of_a_huge_text_are_read():
    filler = "lorem ipsum " * (MAX_SCAN_CHARS // 6)
    rules = (rule("chest pain"),)
    assert names(f"chest pain {filler}", rules=rules) == ["r"]
    assert names(f"{filler} chest pain", rules=rules) == ["r"]
    middle = filler[: len(filler) // 2] + " chest pain " + filler[len(filler) // 2 :]
    assert names(middle, rules=rules) == []  # documented: the middle of a huge text is not read


def test_nul_bytes_and_lone_surrogates_are_just_text():
    rules = (rule("chest pain"), rule(r"x\x00y", name="nul"))
    assert names("\x00chest pain\x00", rules=rules) == ["r"]
    assert names("x\x00y", rules=rules) == ["nul"]
    assert names("\ud800chest pain\udfff", rules=rules) == ["r"]


# --- compiling and caching --------------------------------------------------------------


def test_a_rule_set_is_compiled_once_and_patterns_are_shared():
    highrisk.compile.cache_clear()
    scan(DEFAULT_RULES, "chest pain", "request")
    scan(DEFAULT_RULES, "nothing", "response")
    assert highrisk.compile.cache_info().misses == 1
    assert highrisk.compile.cache_info().hits == 1
    other = (*DEFAULT_RULES, rule("custom"))
    a, b = highrisk.compile(DEFAULT_RULES), highrisk.compile(other)
    assert a.request.checks[0][0] is b.request.checks[0][0]  # one compiled pattern


def test_the_caches_are_bounded():
    assert highrisk.compile.cache_parameters()["maxsize"] == highrisk.COMPILED_CACHE_SIZE
    assert highrisk._regex.cache_parameters()["maxsize"] == highrisk.PATTERN_CACHE_SIZE


def test_a_stored_pattern_that_does_not_compile_is_skipped_with_a_warning(caplog):
    highrisk._regex.cache_clear()
    rules = (rule("(broken", name="bad"), rule("dose", name="good"))
    with caplog.at_level(logging.WARNING, logger="aqta.highrisk"):
        assert names("(broken dose", rules=rules) == ["good"]
        assert names("(broken dose", "response", rules) == ["good"]
    assert len([r for r in caplog.records if "skipped" in r.message]) == 1


def test_the_set_and_each_pattern_agree():
    # The RE2 set names the matching rules in one pass; asked one by one they say the same.
    text = "Do I have a stroke? 10 mg/kg of aspirin, chest pain, call 911"
    side = highrisk.compile(DEFAULT_RULES).request
    one_by_one = tuple(m for regex, m in side.checks if regex.search(text.encode()))
    assert scan(DEFAULT_RULES, text, "request") == one_by_one
    assert len(one_by_one) >= 5


def test_without_a_set_each_pattern_is_asked(monkeypatch):
    # A set whose DFA ran out of memory reports nothing: the patterns are then asked.
    side = highrisk.compile(DEFAULT_RULES).request

    class Exhausted:
        def Match(self, data):
            return None

    compiled = highrisk.Compiled(
        request=highrisk.Side(checks=side.checks, any=side.any, which=Exhausted()),
        response=highrisk.compile(DEFAULT_RULES).response,
    )
    monkeypatch.setattr(highrisk, "compile", lambda rules: compiled)
    assert "Triage: chest pain, breathing, collapse" in names("chest pain")
