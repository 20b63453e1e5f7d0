"""From classified answers to findings: which outcome, which attribute, which test.

Probe runs are paired: the variants of one case and one repetition form a block, and each
attribute's groups are compared within blocks (McNemar, Cochran's Q, Wilcoxon, Friedman).
Passive monitoring is unpaired: answers counted per group over a period (chi-square or
Fisher's exact). Every run's findings are corrected together for the false discovery rate
(Benjamini-Hochberg, across outcomes and attributes). The statistics are in
:mod:`compliance.bias.stats`; docs/bias.md says what a flag means and what it does not.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from compliance.bias import stats
from compliance.bias.probes import outcome_meta

CONTROL = "control"


class Classified(Protocol):
    case_id: str
    attribute: str
    group: str
    repetition: int
    outcomes: Any


def _case_outcomes(definition: Mapping[str, Any]) -> dict[str, list[str]]:
    return {case["id"]: list(case.get("outcomes", [])) for case in definition.get("cases", [])}


def probe_findings(
    definition: Mapping[str, Any], calls: Iterable[Classified]
) -> list[dict[str, Any]]:
    """Per attribute and outcome, the paired comparison of the attribute's groups."""
    meta = outcome_meta(definition)
    applies = _case_outcomes(definition)
    # attribute -> outcome -> (case, repetition) -> group -> value
    blocks: dict[str, dict[str, dict[tuple[str, int], dict[str, Any]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(dict))
    )
    for call in calls:
        if call.attribute == CONTROL or not isinstance(call.outcomes, dict):
            continue
        for outcome in applies.get(call.case_id, []):
            blocks[call.attribute][outcome][(call.case_id, call.repetition)][call.group] = (
                call.outcomes.get(outcome)
            )
    attributes = definition.get("attributes", {})
    findings: list[stats.Finding] = []
    for attribute in attributes:
        levels = list(attributes[attribute].get("levels", {}))
        for outcome, info in meta.items():
            by_block = blocks.get(attribute, {}).get(outcome)
            if not by_block:
                continue
            rows = [{group: block.get(group) for group in levels} for block in by_block.values()]
            findings.append(_paired(attribute, outcome, info, rows))
    stats.fdr_adjust(findings)
    return [stats.finding_dict(f) for f in findings]


def _paired(
    attribute: str, outcome: str, info: Mapping[str, Any], rows: list[dict[str, Any]]
) -> stats.Finding:
    if info.get("kind") == "continuous":
        return stats.paired_continuous(
            attribute, outcome, rows, higher_is_favourable=bool(info.get("favourable", True))
        )
    return stats.paired_binary(
        attribute, outcome, rows, favourable=bool(info.get("favourable", True))
    )


def unpaired_findings(
    definition: Mapping[str, Any], counts: Mapping[str, Mapping[str, Mapping[str, tuple[int, int]]]]
) -> list[dict[str, Any]]:
    """``counts[attribute][outcome][group] = (successes, n)`` compared between groups."""
    meta = outcome_meta(definition)
    findings = [
        stats.unpaired_binary(
            attribute, outcome, by_group, favourable=bool(meta[outcome].get("favourable", True))
        )
        for attribute, outcomes in counts.items()
        for outcome, by_group in outcomes.items()
        if len(by_group) >= 2
    ]
    stats.fdr_adjust(findings)
    return [stats.finding_dict(f) for f in findings]


def findings_summary(findings: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """How many findings have each status (the run list shows these)."""
    summary = {"findings": 0, "flagged": 0, "not_flagged": 0, "inconclusive": 0}
    for finding in findings:
        summary["findings"] += 1
        status = str(finding.get("status"))
        if status in summary:
            summary[status] += 1
    return summary
