"""High-risk healthcare decisions: the rules' evaluator on the /v1 path (docs/high-risk.md).

Pure and database-free: the data plane hands over an organisation's enabled rules as
``KeyRecord.high_risk_rules`` tuples ``(name, category, pattern, scope, action)`` and the
text of a request or an answer; :func:`scan` says which rules match.

- A pattern is **terms** separated by ``|`` when it has no other regular-expression syntax
  (none of ``\\ . ^ $ * + ? ( ) [ ] { }``): each term matches as whole words, with any
  whitespace between its words (``chest pain`` matches ``Chest\\n pain``). Otherwise it is
  an **RE2 regular expression**, used as written. Both are case-insensitive.
- RE2 runs in time linear in the text (no backtracking), so no pattern can hang a worker;
  on top of that a pattern is at most :data:`MAX_PATTERN_CHARS` characters and
  :data:`MAX_PROGRAM_SIZE` RE2 instructions, and at most :data:`MAX_SCAN_CHARS` characters
  of one side of a call are looked at (its beginning and its end, when longer).
- Rules are compiled once per distinct rules tuple (:func:`compile`, an LRU cache of
  :data:`COMPILED_CACHE_SIZE`) and each pattern once per process (shared by every
  organisation that has it, as most have the default set).
- An answer-side match only flags, whatever the rule's action: by then the provider has
  been called and the answer exists, so :func:`scan` reports it as ``flag``.

Nothing here raises on what a client sends: any JSON value is a body, any string a text.
A stored pattern that does not compile (it never passed :func:`pattern_check`) is skipped
with one warning per process.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, NamedTuple

import re2

logger = logging.getLogger("aqta.highrisk")

Rule = tuple[str, str, str, str, str]  # name, category, pattern, scope, action
Where = Literal["request", "response"]

MAX_PATTERN_CHARS: Final = 2000
MAX_PROGRAM_SIZE: Final = 4000  # RE2 instructions of one compiled pattern
MAX_SCAN_CHARS: Final = 262_144  # of one side's text: the first and the last half of it
COMPILED_CACHE_SIZE: Final = 256  # distinct rule sets per process
PATTERN_CACHE_SIZE: Final = 2048  # distinct patterns per process
# RE2's memory budget (program and DFA cache, in bytes) per pattern and per rule set's
# union. Past it RE2 does not fail: it falls back to its slower, still linear, NFA.
REGEX_MEMORY: Final = 2 << 20
UNION_MEMORY: Final = 8 << 20

BLOCK: Final = "block"
FLAG: Final = "flag"
SCOPES: Final[dict[str, frozenset[str]]] = {
    "request": frozenset({"request", "both"}),
    "response": frozenset({"response", "both"}),
}
_SYNTAX: Final = frozenset("\\.^$*+?()[]{}")


class Match(NamedTuple):
    name: str
    category: str
    action: str  # "flag" or "block" (always "flag" on the answer side)


@dataclass(frozen=True, slots=True)
class Side:
    """One side's rules ready to scan: each pattern with what its match reports; all of
    them as one alternation (``any``), which reads the text once, and most calls match no
    rule, so are done after that pass; and as an RE2 set (``which``), which names every
    rule that matches in one more pass. A set reports nothing when its DFA runs out of
    memory, so after ``any`` matched an empty answer means "ask each pattern". Both are
    None with fewer than two rules or when too large for RE2's memory budget."""

    checks: tuple[tuple[Any, Match], ...]
    any: Any = None
    which: Any = None


@dataclass(frozen=True, slots=True)
class Compiled:
    request: Side
    response: Side


def _options(max_mem: int) -> re2.Options:
    options = re2.Options()
    options.case_sensitive = False
    options.never_capture = True  # only "does it match" is asked
    options.log_errors = False  # a bad pattern is reported to its author, not to stderr
    options.max_mem = max_mem
    return options


_OPTIONS: Final = _options(REGEX_MEMORY)
_UNION_OPTIONS: Final = _options(UNION_MEMORY)


def is_terms(pattern: str) -> bool:
    """Whether ``pattern`` is a list of terms (no regular-expression syntax but ``|``)."""
    return not _SYNTAX.intersection(pattern)


def _edge(char: str) -> str:
    """How a term's first or last character must meet its neighbour: an ASCII word
    character through RE2's (small, ASCII) ``\\b``; any other letter or digit through the
    Unicode classes (large: written once per group of terms); anything else freely."""
    if char.isascii() and (char.isalnum() or char == "_"):
        return "ascii"
    return "unicode" if char.isalnum() else ""


_BOUNDARY: Final = {
    ("start", "ascii"): r"\b",
    ("end", "ascii"): r"\b",
    ("start", "unicode"): r"(?:^|[^\pL\pN_])",
    ("end", "unicode"): r"(?:[^\pL\pN_]|$)",
}


def _term_body(term: str) -> str:
    """A term's words, any whitespace between them; an apostrophe also as a typographic one."""
    words = (re2.escape(word).replace("\\'", "['\u2019]") for word in term.split())
    return r"\s+".join(words)


def pattern_regex(pattern: str) -> str:
    """The RE2 expression a pattern stands for: a regular expression as it is; terms as
    whole-word alternatives, grouped by the boundaries their ends need."""
    if not is_terms(pattern):
        return pattern
    groups: dict[tuple[str, str], list[str]] = {}
    for term in pattern.split("|"):
        term = term.strip()
        groups.setdefault((_edge(term[0]), _edge(term[-1])), []).append(_term_body(term))
    return "|".join(
        f"{_BOUNDARY.get(('start', start), '')}(?:{'|'.join(bodies)})"
        f"{_BOUNDARY.get(('end', end), '')}"
        for (start, end), bodies in groups.items()
    )


def _text_problem(pattern: object) -> str | None:
    """What is wrong with a pattern before it is compiled."""
    if not isinstance(pattern, str):
        return "must be a string"
    if not pattern.strip():
        return "must not be empty"
    if len(pattern) > MAX_PATTERN_CHARS:
        return f"is {len(pattern)} characters long; at most {MAX_PATTERN_CHARS}"
    if "\x00" in pattern:
        return "must not contain NUL characters"
    if is_terms(pattern) and any(not term.strip() for term in pattern.split("|")):
        return "has an empty term: every '|' must separate two terms"
    return None


def _re2_compile(expression: str) -> Any:
    try:
        return re2.compile(expression, _OPTIONS)
    except re2.error as error:
        reason = error.args[0] if error.args else b""
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        reason = str(reason)[:200]
    if "pattern too large" in reason:
        raise ValueError("is too complex (larger than RE2's memory budget)")
    raise ValueError(f"is not a valid RE2 regular expression ({reason})")


def _compile_checked(pattern: str) -> Any:
    """The compiled pattern; ``ValueError`` with a message for its author otherwise."""
    problem = _text_problem(pattern)
    if problem is not None:
        raise ValueError(problem)
    regex = _re2_compile(pattern_regex(pattern))
    if regex.programsize > MAX_PROGRAM_SIZE:
        raise ValueError(
            f"is too complex ({regex.programsize} RE2 instructions; at most {MAX_PROGRAM_SIZE})"
        )
    if regex.search(b"") is not None:
        raise ValueError("matches empty text, so it would match every call")
    return regex


def pattern_check(pattern: str) -> str | None:
    """What is wrong with a pattern, as the end of a sentence starting "The pattern …",
    or None when it can be used."""
    try:
        _compile_checked(pattern)
    except ValueError as error:
        return str(error)
    return None


@functools.lru_cache(maxsize=PATTERN_CACHE_SIZE)
def _regex(pattern: str) -> Any:
    try:
        return _compile_checked(pattern)
    except ValueError as error:
        logger.warning("High-risk rule pattern skipped: it %s: %.100r", error, pattern)
        return None


def _side(rules: Iterable[Rule], where: Where) -> Side:
    checks = []
    for rule in rules:
        name, category, pattern, scope, action = rule
        if scope not in SCOPES["request"] | SCOPES["response"]:
            scope = "both"
        if scope not in SCOPES[where]:
            continue
        regex = _regex(pattern)
        if regex is None:
            continue
        effective = BLOCK if action == BLOCK and where == "request" else FLAG
        checks.append((regex, Match(name, category, effective)))
    patterns = [regex.pattern for regex, _ in checks]
    if len(patterns) < 2:
        return Side(checks=tuple(checks))
    return Side(checks=tuple(checks), any=_union(patterns), which=_set(patterns))


def _union(patterns: list[str]) -> Any:
    try:
        return re2.compile("|".join(f"(?:{pattern})" for pattern in patterns), _UNION_OPTIONS)
    except re2.error:
        return None


def _set(patterns: list[str]) -> Any:
    try:
        which = re2.Set.SearchSet(_UNION_OPTIONS)
        for pattern in patterns:
            which.Add(pattern)
        which.Compile()
    except re2.error:
        return None
    return which


@functools.lru_cache(maxsize=COMPILED_CACHE_SIZE)
def compile(rules: tuple[Rule, ...]) -> Compiled:
    """The rule set compiled for both sides; cached per distinct tuple."""
    return Compiled(request=_side(rules, "request"), response=_side(rules, "response"))


def _bounded(text: str) -> str:
    if len(text) <= MAX_SCAN_CHARS:
        return text
    half = (MAX_SCAN_CHARS - 1) // 2
    return f"{text[:half]}\n{text[-half:]}"


def _rules_key(rules: Iterable[Sequence[str]]) -> tuple[Rule, ...]:
    """The rules as a hashable tuple of 5-tuples (what KeyRecord already holds)."""
    if isinstance(rules, tuple) and all(type(rule) is tuple for rule in rules):
        return rules
    return tuple((r[0], r[1], r[2], r[3], r[4]) for r in rules)


def scan(rules: Iterable[Sequence[str]], text: object, where: Where) -> tuple[Match, ...]:
    """The rules that match ``text``, on the ``where`` side of a call, in the rules' order.

    ``rules`` as the data plane holds them (``KeyRecord.high_risk_rules``); ``text`` from
    :func:`request_text` or :func:`response_text`, or any string (anything else matches
    nothing).
    """
    if where not in SCOPES:
        raise ValueError(f"where must be 'request' or 'response', not {where!r}")
    if not isinstance(text, str) or not text:
        return ()
    compiled = compile(_rules_key(rules))
    side = compiled.request if where == "request" else compiled.response
    if not side.checks:
        return ()
    data = _bounded(text).encode("utf-8", "replace")  # lone surrogates become '?'
    if side.any is not None and side.any.search(data) is None:
        return ()
    found = side.which.Match(data) if side.which is not None else None
    if found:
        return tuple(side.checks[index][1] for index in sorted(found))
    return tuple(match for regex, match in side.checks if regex.search(data) is not None)


def blocks(matches: Iterable[Match]) -> bool:
    """Whether any match asks for the call to be blocked (request side only)."""
    return any(match.action == BLOCK for match in matches)


EVENT_KIND: Final = "high_risk_detected"


def event_data(request: Iterable[Match], response: Iterable[Match] = ()) -> dict[str, Any]:
    """What a ``high_risk_detected`` event carries for webhooks: each rule that matched,
    on which side, and whether the call was blocked. Never the text that matched."""
    request = tuple(request)
    matched = [
        {"name": m.name, "category": m.category, "action": m.action, "where": where}
        for where, matches in (("request", request), ("response", tuple(response)))
        for m in matches
    ]
    return {"rules": matched, "blocked": blocks(request)}


# --- the text of a call ---------------------------------------------------------------------


def _joined(parts: list[str]) -> str:
    """The parts joined by newlines, at most MAX_SCAN_CHARS of them (head and tail),
    without building the whole text first."""
    total = sum(len(part) + 1 for part in parts)
    if total <= MAX_SCAN_CHARS + 1:
        return "\n".join(parts)
    half = (MAX_SCAN_CHARS - 1) // 2
    return f"{_take(parts, half)}\n{_take(parts[::-1], half, tail=True)}"


def _take(parts: list[str], limit: int, *, tail: bool = False) -> str:
    taken: list[str] = []
    size = 0
    for part in parts:
        room = limit - size
        if room <= 0:
            break
        piece = part if len(part) <= room else (part[-room:] if tail else part[:room])
        taken.append(piece)
        size += len(piece) + 1
    return "\n".join(taken[::-1] if tail else taken)


def _content_parts(content: object, into: list[str]) -> None:
    """A message's text: its string content, or the text of its ``text`` parts."""
    if isinstance(content, str):
        into.append(content)
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text":
                text = part.get("text")
                if isinstance(text, str):
                    into.append(text)


def request_text(body: object) -> str:
    """The text a chat completions request carries: every message's string content and
    text parts (system and developer messages included; images, audio and files ignored),
    one message per line; at most MAX_SCAN_CHARS (the beginning and the end)."""
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list):
        return ""
    parts: list[str] = []
    for message in messages:
        if isinstance(message, dict):
            _content_parts(message.get("content"), parts)
    return _joined(parts)


def _tool_arguments(tool_calls: object, key: int, pieces: dict[tuple[int, str], list[str]]) -> None:
    if not isinstance(tool_calls, list):
        return
    for position, call in enumerate(tool_calls):
        function = call.get("function") if isinstance(call, dict) else None
        arguments = function.get("arguments") if isinstance(function, dict) else None
        if isinstance(arguments, str):
            index = call.get("index", position)
            pieces.setdefault((key, f"tool:{index}"), []).append(arguments)


def _message_text(message: dict, key: int, pieces: dict[tuple[int, str], list[str]]) -> None:
    content: list[str] = []
    _content_parts(message.get("content"), content)
    if content:
        pieces.setdefault((key, "content"), []).extend(content)
    refusal = message.get("refusal")
    if isinstance(refusal, str):
        pieces.setdefault((key, "refusal"), []).append(refusal)
    _tool_arguments(message.get("tool_calls"), key, pieces)


def response_text(answer: object) -> str:
    """The text of an answer: a ``chat.completion`` object, or a stream's
    ``chat.completion.chunk`` objects (a list, in order; deltas are put back together, so
    a term split across chunks still matches). Each choice's content, refusal and tool-call
    arguments, one per line; at most MAX_SCAN_CHARS (the beginning and the end)."""
    objects = [answer] if isinstance(answer, dict) else answer
    if not isinstance(objects, list):
        return ""
    pieces: dict[tuple[int, str], list[str]] = {}
    for obj in objects:
        choices = obj.get("choices") if isinstance(obj, dict) else None
        if not isinstance(choices, list):
            continue
        for position, choice in enumerate(choices):
            if not isinstance(choice, dict):
                continue
            index = choice.get("index")
            key = index if isinstance(index, int) else position
            message = choice.get("message", choice.get("delta"))
            if isinstance(message, dict):
                _message_text(message, key, pieces)
    return _joined(["".join(chunk) for chunk in pieces.values()])
