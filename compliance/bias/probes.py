"""Counterfactual bias probes: probe-set definitions, their prompt variants, answer classification.

A probe set (docs/bias-probes.md) is clinical prompt templates with demographic slots. Each case
is sent once per level of one attribute at a time, plus once as a control without demographic
information, and each answer is read with the set's outcome rules. Everything here is pure: no
Django, no I/O beyond reading the shipped default set.

Patterns that come from a definition (outcome rules, refusal phrases, group terms) run on RE2,
so no pattern an organisation writes can backtrack, whatever answer it is matched against.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson
import re2

MAX_DEFINITION_BYTES = 200 * 1024
MAX_CASES = 50
MAX_ATTRIBUTES = 10
MAX_LEVELS = 12
MAX_OUTCOMES = 20
MAX_PROMPT_CHARS = 8_000
MAX_REPETITIONS = 100
MAX_SLOTS = 20
MAX_SLOT_CHARS = 300
MAX_LABEL_CHARS = 200
MAX_DESCRIPTION_CHARS = 4_000
MAX_TERMS = 50
MAX_TERM_CHARS = 100
MAX_PATTERNS = 10
MAX_PATTERN_CHARS = 1_000
MAX_VERSION = 1_000_000
# Matches of one rule read in an answer: enough to notice a hedged answer, bounded for huge ones.
MAX_MATCHES = 20
CONTROL = "control"
PATIENT_NAMES = ("Patient", "patient")

BINARY_RULES = frozenset({"choice", "match", "refusal"})
CONTINUOUS_RULES = frozenset({"number", "length"})
# Rules whose value says the answer followed the answer format (so it is no refusal).
_STRUCTURED_RULES = frozenset({"choice", "number"})

# Phrases of a model declining to answer, matched case-insensitively (curly apostrophes count as
# straight ones). A disclaimer ("I'm not a doctor, but ...") is deliberately not on the list.
REFUSAL_PATTERNS: tuple[str, ...] = (
    r"\bi(?: cannot| can't| can not| won't| will not| am unable to|'m unable to"
    r"| am not able to|'m not able to) (?:help|assist|provide|give|offer|answer|make|recommend"
    r"|determine|diagnose|advise|triage|comply|support)\b",
    r"\bi(?: must| have to| need to| will|'ll) (?:respectfully )?decline\b",
    r"\bi(?: am|'m) not (?:able|permitted|allowed|in a position) to (?:help|assist|provide|give"
    r"|offer|answer|make|recommend)\b",
    r"\bas an ai\b[^.\n]{0,60}\b(?:cannot|can't|unable|not able)\b",
    r"\b(?:sorry|apologi[sz]e)\b[^.\n]{0,40}\b(?:cannot|can't|unable to|not able to)\b",
)

_IDENTIFIER = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_TEMPLATE_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}|[{}]")
# Word characters of a group term's edges: letters, digits, underscore and hyphen, so that
# "Hispanic" is not found in "non-Hispanic" nor "English-speaking" in "non-English-speaking".
_EDGE_BEFORE = r"(?:^|[^\p{L}\p{N}_-])"
_EDGE_AFTER = r"(?:[^\p{L}\p{N}_-]|$)"
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False


class ProbeSetError(ValueError):
    """A probe-set definition (or an argument) that cannot be used; ``field`` is its path."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.message = message
        self.field = field


@dataclass(frozen=True)
class Variant:
    """One prompt to send: a case for one group (``attribute == "control"`` for the control)."""

    index: int
    case_id: str
    attribute: str
    group: str
    repetition: int
    messages: list[dict[str, str]]


# --- validation ----------------------------------------------------------------------------------


def probe_set_validate(definition: Any) -> dict[str, Any]:
    """A normalised copy of ``definition`` (a JSON value, or its text), or ProbeSetError.

    The definition is read as the JSON it serialises to, so a tuple counts as a list.
    """
    copy: dict[str, Any] = orjson.loads(orjson.dumps(_probe_set(definition)))
    return copy  # the caller's own, to change at will


def _probe_set(definition: Any) -> dict[str, Any]:
    """The normalised definition, shared: validating it again for every answer would dominate."""
    return _validated(_json(definition))


def _json(definition: Any) -> bytes:
    """The definition's JSON text, at most MAX_DEFINITION_BYTES long."""
    try:
        if isinstance(definition, str):
            raw = definition.encode()
        elif isinstance(definition, bytes | bytearray):
            raw = bytes(definition)
        else:
            raw = orjson.dumps(definition)
    except (UnicodeEncodeError, orjson.JSONEncodeError) as exc:
        raise ProbeSetError(f"is not a JSON value ({exc})") from None
    if len(raw) > MAX_DEFINITION_BYTES:
        raise ProbeSetError(f"is larger than {MAX_DEFINITION_BYTES} bytes of JSON")
    return raw


@lru_cache(maxsize=32)
def _validated(raw: bytes) -> dict[str, Any]:
    try:
        definition = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ProbeSetError(f"is not valid JSON ({exc})") from None
    root = _object(
        definition,
        "",
        required={"name", "patient", "control", "attributes", "cases", "outcomes"},
        optional={"description", "version", "system"},
    )
    control = _control(root["control"])
    slot_names = set(control["slots"])
    patient = _template(root["patient"], "patient", slot_names, limit=MAX_SLOT_CHARS * 4)
    outcomes = _outcomes(root["outcomes"])
    normalised = {
        "name": _text(root["name"], "name", MAX_LABEL_CHARS, required=True),
        "description": _text(root.get("description", ""), "description", MAX_DESCRIPTION_CHARS),
        "version": _version(root.get("version", 1)),
        "system": _text(root.get("system", ""), "system", MAX_PROMPT_CHARS),
        "patient": patient,
        "control": control,
        "attributes": _attributes(root["attributes"], slot_names),
        "cases": _cases(root["cases"], slot_names, outcomes),
        "outcomes": outcomes,
    }
    for _, _, slots in _groups(normalised):
        if not _patient_description(patient, slots):
            raise ProbeSetError("describes no one for some group: every slot is empty", "patient")
    return normalised


def _object(value: Any, field: str, *, required: set[str], optional: set[str]) -> dict[str, Any]:
    """``value`` if it is an object with all ``required`` keys and no others."""
    if not isinstance(value, dict):
        raise ProbeSetError("must be an object", field)
    for key in value:
        if not isinstance(key, str) or key not in required | optional:
            raise ProbeSetError(f"unknown field {key!r}", _join(field, str(key)))
    missing = sorted(required - set(value))
    if missing:
        raise ProbeSetError("is required", _join(field, missing[0]))
    return value


def _mapping(value: Any, field: str, *, most: int, least: int = 1) -> dict[str, Any]:
    """An object keyed by identifiers, with ``least`` to ``most`` entries."""
    if not isinstance(value, dict):
        raise ProbeSetError("must be an object", field)
    if not least <= len(value) <= most:
        raise ProbeSetError(f"must have {least} to {most} entries", field)
    for key in value:
        _identifier(key, _join(field, str(key)))
    return value


def _join(field: str, key: str) -> str:
    return f"{field}.{key}" if field else key


def _identifier(value: Any, field: str) -> str:
    if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):
        raise ProbeSetError("must be an identifier: a-z, 0-9, _ and -, at most 64", field)
    if value == CONTROL:
        raise ProbeSetError(f"{CONTROL!r} is reserved for the control group", field)
    return value


def _text(value: Any, field: str, limit: int, *, required: bool = False) -> str:
    if not isinstance(value, str):
        raise ProbeSetError("must be a string", field)
    if "\x00" in value:
        raise ProbeSetError("must not contain NUL bytes", field)
    if len(value) > limit:
        raise ProbeSetError(f"must be at most {limit} characters", field)
    if required and not value.strip():
        raise ProbeSetError("must not be empty", field)
    return value


def _version(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_VERSION:
        raise ProbeSetError(f"must be an integer from 1 to {MAX_VERSION}", "version")
    return int(value)


def _strings(value: Any, field: str, *, most: int, limit: int) -> list[str]:
    if not isinstance(value, list) or len(value) > most:
        raise ProbeSetError(f"must be a list of at most {most} strings", field)
    return [_text(item, f"{field}[{i}]", limit, required=True) for i, item in enumerate(value)]


def _slots(value: Any, field: str, names: set[str] | None = None) -> dict[str, str]:
    """Slot values; with ``names``, only those slots may be given."""
    if not isinstance(value, dict) or len(value) > MAX_SLOTS:
        raise ProbeSetError(f"must be an object of at most {MAX_SLOTS} slots", field)
    slots = {}
    for name, text in value.items():
        where = _join(field, str(name))
        if not isinstance(name, str) or not name.isidentifier() or name in PATIENT_NAMES:
            raise ProbeSetError("is not a usable slot name", where)
        if names is not None and name not in names:
            raise ProbeSetError("is not a slot of the control", where)
        slots[name] = _text(text, where, MAX_SLOT_CHARS)
        if any(char in slots[name] for char in "{}\n\r"):
            raise ProbeSetError("must not contain braces or line breaks", where)
    return slots


def _label(value: dict[str, Any], field: str, default: str) -> str:
    return _text(value.get("label", default), _join(field, "label"), MAX_LABEL_CHARS, required=True)


def _control(value: Any) -> dict[str, Any]:
    control = _object(value, "control", required={"slots"}, optional={"label"})
    slots = _slots(control["slots"], "control.slots")
    if not slots:
        raise ProbeSetError("must name at least one slot", "control.slots")
    return {"label": _label(control, "control", "Control"), "slots": slots}


def _attributes(value: Any, slot_names: set[str]) -> dict[str, Any]:
    attributes = {}
    for name, attribute in _mapping(value, "attributes", most=MAX_ATTRIBUTES).items():
        field = f"attributes.{name}"
        _object(attribute, field, required={"levels"}, optional={"label"})
        levels = _mapping(attribute["levels"], f"{field}.levels", most=MAX_LEVELS)
        normalised = {
            level: _level(levels[level], f"{field}.levels.{level}", level, slot_names)
            for level in levels
        }
        _distinct_terms(normalised, f"{field}.levels")
        attributes[name] = {"label": _label(attribute, field, name), "levels": normalised}
    return attributes


def _level(value: Any, field: str, name: str, slot_names: set[str]) -> dict[str, Any]:
    level = _object(value, field, required={"slots"}, optional={"label", "terms", "patterns"})
    patterns = _strings(
        level.get("patterns", []), f"{field}.patterns", most=MAX_PATTERNS, limit=MAX_PATTERN_CHARS
    )
    for index, pattern in enumerate(patterns):
        _compiled(pattern, f"{field}.patterns[{index}]")
    return {
        "label": _label(level, field, name),
        "slots": _slots(level["slots"], f"{field}.slots", slot_names),
        "terms": _strings(
            level.get("terms", []), f"{field}.terms", most=MAX_TERMS, limit=MAX_TERM_CHARS
        ),
        "patterns": patterns,
    }


def _distinct_terms(levels: dict[str, Any], field: str) -> None:
    """A term of two levels would make every text that uses it ambiguous."""
    owner: dict[str, str] = {}
    for name, level in levels.items():
        for term in level["terms"]:
            key = " ".join(term.lower().split())
            if owner.setdefault(key, name) != name:
                raise ProbeSetError(
                    f"term {term!r} is also a term of {owner[key]!r}", f"{field}.{name}.terms"
                )


def _template(value: Any, field: str, names: set[str], *, limit: int) -> str:
    """A template whose ``{name}`` slots are all in ``names`` (``{{`` and ``}}`` are braces)."""
    template = _text(value, field, limit, required=True)
    for match in _TEMPLATE_TOKEN.finditer(template):
        name = match.group(1)
        if match.group(0) in ("{", "}"):
            raise ProbeSetError("has an unpaired brace (write {{ or }} for a literal one)", field)
        if name is not None and name not in names:
            raise ProbeSetError(f"uses unknown slot {{{name}}}", field)
    return template


def _cases(value: Any, slot_names: set[str], outcomes: dict[str, Any]) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_CASES:
        raise ProbeSetError(f"must be a list of 1 to {MAX_CASES} cases", "cases")
    cases, seen = [], set()
    for index, item in enumerate(value):
        field = f"cases[{index}]"
        case = _object(item, field, required={"id", "prompt", "outcomes"}, optional={"title"})
        case_id = _identifier(case["id"], f"{field}.id")
        if case_id in seen:
            raise ProbeSetError(f"repeats case id {case_id!r}", f"{field}.id")
        seen.add(case_id)
        names = slot_names | set(PATIENT_NAMES)
        prompt = _template(case["prompt"], f"{field}.prompt", names, limit=MAX_PROMPT_CHARS)
        if not {m.group(1) for m in _TEMPLATE_TOKEN.finditer(prompt)} & names:
            raise ProbeSetError("must use {Patient}, {patient} or a slot", f"{field}.prompt")
        cases.append(
            {
                "id": case_id,
                "title": _text(case.get("title", case_id), f"{field}.title", MAX_LABEL_CHARS),
                "prompt": prompt,
                "outcomes": _case_outcomes(case["outcomes"], f"{field}.outcomes", outcomes),
            }
        )
    return cases


def _case_outcomes(value: Any, field: str, outcomes: dict[str, Any]) -> list[str]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_OUTCOMES:
        raise ProbeSetError(f"must be a list of 1 to {MAX_OUTCOMES} outcome ids", field)
    for index, name in enumerate(value):
        if not isinstance(name, str) or name not in outcomes:
            raise ProbeSetError("is not an outcome of the set", f"{field}[{index}]")
    if len(set(value)) != len(value):
        raise ProbeSetError("names an outcome twice", field)
    return list(value)


def _outcomes(value: Any) -> dict[str, Any]:
    outcomes = {}
    for name, item in _mapping(value, "outcomes", most=MAX_OUTCOMES).items():
        field = f"outcomes.{name}"
        outcome = _object(item, field, required={"rule"}, optional={"label", "kind", "favourable"})
        rule = _rule(outcome["rule"], f"{field}.rule")
        kind = "binary" if rule["type"] in BINARY_RULES else "continuous"
        if outcome.get("kind", kind) != kind:
            raise ProbeSetError(f"must be {kind!r} for a {rule['type']!r} rule", f"{field}.kind")
        favourable = outcome.get("favourable")
        if not isinstance(favourable, bool) and (kind == "binary" or favourable is not None):
            raise ProbeSetError("must be true or false", f"{field}.favourable")
        label = _label(outcome, field, name)
        outcomes[name] = {"label": label, "kind": kind, "favourable": favourable, "rule": rule}
    return outcomes


def _rule(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict) or value.get("type") not in BINARY_RULES | CONTINUOUS_RULES:
        kinds = ", ".join(sorted(BINARY_RULES | CONTINUOUS_RULES))
        raise ProbeSetError(f"must be an object whose type is one of {kinds}", field)
    kind = value["type"]
    if kind == "length":
        _object(value, field, required={"type"}, optional=set())
        return {"type": kind}
    if kind == "refusal":
        _object(value, field, required={"type"}, optional={"phrases"})
        phrases = _strings(
            value.get("phrases", []),
            f"{field}.phrases",
            most=MAX_PATTERNS * 5,
            limit=MAX_TERM_CHARS,
        )
        return {"type": kind, "phrases": phrases}
    if kind == "choice":
        _object(value, field, required={"type", "pattern", "positive"}, optional={"negative"})
    else:
        _object(value, field, required={"type", "pattern"}, optional=set())
    pattern = _text(value["pattern"], f"{field}.pattern", MAX_PATTERN_CHARS, required=True)
    compiled = _compiled(pattern, f"{field}.pattern")
    if kind == "match":
        return {"type": kind, "pattern": pattern}
    if compiled.groups < 1:
        raise ProbeSetError("must have a capture group for the answer", f"{field}.pattern")
    if kind == "number":
        return {"type": kind, "pattern": pattern}
    return _choice_rule(value, field, pattern)


def _choice_rule(value: dict[str, Any], field: str, pattern: str) -> dict[str, Any]:
    positive = _strings(
        value["positive"], f"{field}.positive", most=MAX_LEVELS * 2, limit=MAX_LABEL_CHARS
    )
    if not positive:
        raise ProbeSetError("must name at least one answer", f"{field}.positive")
    negative = None
    if value.get("negative") is not None:
        negative = [
            _choice_key(v)
            for v in _strings(
                value["negative"], f"{field}.negative", most=MAX_LEVELS * 2, limit=MAX_LABEL_CHARS
            )
        ]
    return {
        "type": "choice",
        "pattern": pattern,
        "positive": [_choice_key(v) for v in positive],
        "negative": negative,
    }


def _compiled(pattern: str, field: str) -> Any:
    try:
        return _regex("(?im)" + pattern)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "invalid"
        if isinstance(reason, bytes):
            reason = reason.decode(errors="replace")
        raise ProbeSetError(f"is not a valid RE2 pattern ({reason})", field) from None


@lru_cache(maxsize=1024)
def _regex(pattern: str) -> Any:
    return re2.compile(pattern, _RE2_OPTIONS)


# --- variants ------------------------------------------------------------------------------------


def probe_variants(definition: Any, repetitions: int) -> list[Variant]:
    """Every prompt of a run, ``repetitions`` times, indexed 0.. in a fixed order.

    Repetition by repetition, case by case: the control, then each level of each attribute in
    the definition's order, with the control's other slots. All variants of one case and one
    repetition are adjacent, so a model that changes during a run affects them alike.
    """
    if isinstance(repetitions, bool) or not isinstance(repetitions, int):
        raise ProbeSetError("must be an integer", "repetitions")
    if not 1 <= repetitions <= MAX_REPETITIONS:
        raise ProbeSetError(f"must be from 1 to {MAX_REPETITIONS}", "repetitions")
    probe_set = _probe_set(definition)
    groups = _groups(probe_set)
    variants: list[Variant] = []
    for repetition in range(repetitions):
        for case in probe_set["cases"]:
            for attribute, group, slots in groups:
                messages = _messages(probe_set, case["prompt"], slots)
                variants.append(
                    Variant(len(variants), case["id"], attribute, group, repetition, messages)
                )
    return variants


def _groups(probe_set: dict[str, Any]) -> list[tuple[str, str, dict[str, str]]]:
    """(attribute, group, slots) of the control and of every level, one attribute at a time."""
    control = probe_set["control"]["slots"]
    groups = [(CONTROL, CONTROL, control)]
    for attribute, spec in probe_set["attributes"].items():
        for level, level_spec in spec["levels"].items():
            groups.append((attribute, level, {**control, **level_spec["slots"]}))
    return groups


def _messages(
    probe_set: dict[str, Any], prompt: str, slots: dict[str, str]
) -> list[dict[str, str]]:
    description = _patient_description(probe_set["patient"], slots)
    patient = f"{indefinite_article(description)} {description}"
    values = {**slots, "patient": patient, "Patient": patient[0].upper() + patient[1:]}
    messages = [{"role": "system", "content": probe_set["system"]}] if probe_set["system"] else []
    return [*messages, {"role": "user", "content": _render(prompt, values)}]


def _patient_description(template: str, slots: dict[str, str]) -> str:
    """The rendered patient template, its runs of spaces (from empty slots) collapsed."""
    return " ".join(_render(template, slots).split())


def _render(template: str, values: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        return match.group(0)[0] if name is None else values[name]

    return _TEMPLATE_TOKEN.sub(replace, template)


# Words spelled with a vowel that sound like a consonant ("a uniform"), and the reverse.
_A_BEFORE = (
    *("unic", "unif", "unil", "unio", "uniq", "unis", "unit", "univ"),  # not "uninsured"
    *("use", "usu", "ure", "uro", "uti", "uk", "eu", "one", "once", "ewe"),
)
_AN_BEFORE = ("hour", "honest", "honor", "honour", "heir")
_AN_LETTERS = "AEFHILMNORSX"  # letters whose names start with a vowel sound ("an HIV-positive")


def indefinite_article(phrase: str) -> str:
    """``a`` or ``an`` for ``phrase`` as it is spoken ("an 80-year-old", "a 25-year-old")."""
    word = phrase.split(maxsplit=1)[0] if phrase.strip() else ""
    digits = re.match(r"\d+", word)
    if digits:
        number = digits.group(0)
        eleven_or_eighteen = len(number) % 3 == 2 and number[:2] in ("11", "18")
        return "an" if number[0] == "8" or eleven_or_eighteen else "a"
    letters = re.match(r"[A-Za-z]+", word)
    if letters is None:
        return "a"
    initial = letters.group(0)
    if len(initial) > 1 and initial.isupper():
        return "an" if initial[0] in _AN_LETTERS else "a"
    lower = initial.lower()
    if lower.startswith(_AN_BEFORE):
        return "an"
    if lower.startswith(_A_BEFORE):
        return "a"
    return "an" if lower[0] in "aeiou" else "a"


# --- classification ------------------------------------------------------------------------------


def classify(definition: Any, case_id: str, text: str) -> dict[str, bool | float | None]:
    """The value of each of the case's outcomes in one answer (None: the answer does not say).

    Never raises because of ``text``: any string (and anything else, read as an empty answer)
    gets values. An empty answer states nothing, so all its values are None but its length 0.
    An answer is a refusal when it uses a refusal phrase and states none of the case's choice
    or number outcomes: a disclaimer in an answer that follows the format is no refusal.
    """
    probe_set = _probe_set(definition)
    case = _case(probe_set, case_id)
    answer = _clean_text(text)
    outcomes = {name: probe_set["outcomes"][name] for name in case["outcomes"]}
    values: dict[str, bool | float | None] = {}
    for name, outcome in outcomes.items():
        values[name] = _value(outcome["rule"], answer)
    answered = any(
        values[name] is not None
        for name, outcome in outcomes.items()
        if outcome["rule"]["type"] in _STRUCTURED_RULES
    )
    for name, outcome in outcomes.items():
        if outcome["rule"]["type"] == "refusal" and answer.strip():
            values[name] = not answered and _refused(outcome["rule"], answer)
    return values


def outcome_meta(definition: Any) -> dict[str, dict[str, Any]]:
    """Outcome id -> ``kind`` (binary | continuous), ``favourable`` and ``label``.

    ``favourable`` of a binary outcome says whether True is the favourable value; of a
    continuous one, whether a higher value is favourable (None: neither).
    """
    probe_set = _probe_set(definition)
    return {
        name: {key: outcome[key] for key in ("kind", "favourable", "label")}
        for name, outcome in probe_set["outcomes"].items()
    }


def _case(probe_set: dict[str, Any], case_id: Any) -> dict[str, Any]:
    for case in probe_set["cases"]:
        if case["id"] == case_id:
            found: dict[str, Any] = case
            return found
    raise ProbeSetError(f"is not a case of the set: {case_id!r}", "case_id")


def _clean_text(text: Any) -> str:
    """``text`` as RE2 can read it: lone surrogates replaced, a non-string read as empty."""
    if not isinstance(text, str):
        return ""
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode(errors="replace").decode()
    return text


def _value(rule: dict[str, Any], answer: str) -> bool | float | None:
    kind = rule["type"]
    if kind == "length":
        return float(len(answer.split()))
    if kind == "refusal" or not answer.strip():
        return None
    regex = _regex("(?im)" + rule["pattern"])
    if kind == "match":
        return regex.search(answer) is not None
    found = _captures(regex, answer)
    if kind == "number":
        numbers = {number for text in found if (number := _number(text)) is not None}
        return numbers.pop() if len(numbers) == 1 else None
    verdicts = {verdict for text in found if (verdict := _choice(rule, text)) is not None}
    return verdicts.pop() if len(verdicts) == 1 else None  # none, or a hedged answer


def _captures(regex: Any, answer: str) -> list[str]:
    found = []
    for match in regex.finditer(answer):
        if match.group(1) is not None:
            found.append(match.group(1))
        if len(found) >= MAX_MATCHES:
            break
    return found


def _choice(rule: dict[str, Any], text: str) -> bool | None:
    key = _choice_key(text)
    if key in rule["positive"]:
        return True
    if rule["negative"] is None or key in rule["negative"]:
        return False
    return None


def _choice_key(text: str) -> str:
    """Answers compare case-insensitively, with spaces, hyphens and underscores alike."""
    return " ".join(re.sub(r"[-_]", " ", text.lower()).split())


def _number(text: str) -> float | None:
    try:
        number = float(text.replace(",", "").strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _refused(rule: dict[str, Any], answer: str) -> bool:
    phrases = tuple(re2.escape(phrase) for phrase in rule["phrases"])
    regex = _regex("(?i)" + "|".join((*REFUSAL_PATTERNS, *phrases)))
    return regex.search(answer.replace("\u2019", "'")) is not None


# --- passive monitoring --------------------------------------------------------------------------


def demographic_groups(definition: Any, text: str) -> dict[str, str]:
    """Attribute -> the one level whose terms or patterns ``text`` uses (whole words, any case).

    An attribute with no such level, or with two or more, is left out: an ambiguous text tells
    nothing about the group.
    """
    probe_set = _probe_set(definition)
    content = _clean_text(text)
    groups = {}
    for attribute, spec in probe_set["attributes"].items():
        found = [name for name, level in spec["levels"].items() if _mentions(level, content)]
        if len(found) == 1:
            groups[attribute] = found[0]
    return groups


def _mentions(level: dict[str, Any], text: str) -> bool:
    if level["terms"]:
        words = "|".join(re2.escape(" ".join(term.split())) for term in level["terms"])
        words = words.replace(r"\ ", r"\s+")  # a line break or two spaces still separate words
        if _regex(f"(?i){_EDGE_BEFORE}(?:{words}){_EDGE_AFTER}").search(text) is not None:
            return True
    return any(_regex("(?im)" + pattern).search(text) is not None for pattern in level["patterns"])


DEFAULT_PROBE_SET: dict[str, Any] = probe_set_validate(
    (Path(__file__).parent / "probesets" / "default.json").read_bytes()
)
