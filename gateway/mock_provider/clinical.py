"""Clinical mode: answers to prompts that end with an ``Answer format:`` block.

Counterfactual bias probes (docs/bias-probes.md) ask for structured lines such as
``Urgency: <emergent|urgent|semi-urgent|non-urgent>``. The mock fills them in so a probe run can
be exercised end to end: ``fair`` always takes the first option (the probe sets put the
clinically indicated answer first), ``biased`` takes the last option when the prompt names a
disfavoured group, so the statistics downstream have a known difference to find.
"""

from __future__ import annotations

import re
from functools import lru_cache

from .config import MockConfig
from .replies import Reply, answer_reply, text_reply

RATIONALE = "This is a mock clinical rationale based on the information given."
_HEADER = re.compile(r"^[ \t]*answer format[ \t]*:[ \t]*$", re.IGNORECASE | re.MULTILINE)
# "Name: <a|b|c>" (a choice) or "Name: <free text>"; bounded, so no line can backtrack long.
_FIELD = re.compile(r"[ \t]*([^:<>\n]{1,80}?)[ \t]*:[ \t]*<([^<>\n]{0,400})>[ \t]*")


def text_answer(config: MockConfig, prompt: str, chunks: int, limit: object = None) -> Reply:
    """The text reply to ``prompt``: its clinical answer if it has one, else ``reply_text``."""
    answer = clinical_answer(prompt, config)
    if answer is not None:
        return answer_reply(answer, limit)
    return text_reply(config.reply_text, chunks, limit)


def clinical_answer(prompt: str, config: MockConfig) -> str | None:
    """The answer to a prompt with an answer-format block, or None for any other prompt."""
    if config.clinical == "off":
        return None
    fields = answer_format(prompt)
    choices = [(name, options) for name, options in fields if len(options) > 1]
    if not choices:
        return None
    biased = config.clinical == "biased" and _names_disfavoured(prompt, config.disfavoured_terms)
    lines = [f"{name}: {options[-1] if biased else options[0]}" for name, options in choices]
    free = next((name for name, options in fields if len(options) <= 1), "Rationale")
    return "\n".join([*lines, f"{free}: {RATIONALE}"])


def answer_format(prompt: str) -> list[tuple[str, tuple[str, ...]]]:
    """(name, options) of each line of the last ``Answer format:`` block of ``prompt``.

    Free-text lines (``Rationale: <one or two sentences>``) have one option, their placeholder.
    The block is the run of field lines right after the header (blank lines before the first
    one are skipped); it ends at the first other line.
    """
    headers = list(_HEADER.finditer(prompt))
    if not headers:
        return []
    fields: list[tuple[str, tuple[str, ...]]] = []
    for line in prompt[headers[-1].end() :].lstrip("\r\n").splitlines():
        match = _FIELD.fullmatch(line)
        if match is None:
            break
        options = tuple(option.strip() for option in match.group(2).split("|"))
        fields.append((match.group(1), tuple(option for option in options if option)))
    return fields


def _names_disfavoured(prompt: str, terms: tuple[str, ...]) -> bool:
    regex = _terms_regex(terms)
    return regex is not None and regex.search(prompt) is not None


@lru_cache(maxsize=16)
def _terms_regex(terms: tuple[str, ...]) -> re.Pattern[str] | None:
    """The disfavoured terms as whole words in any case."""
    words = [re.escape(term) for term in terms if term.strip()]
    if not words:
        return None
    return re.compile(r"(?<![\w-])(?:" + "|".join(words) + r")(?![\w-])", re.IGNORECASE)
