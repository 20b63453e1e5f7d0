"""The statistics of bias detection: one outcome, one attribute, one verdict.

See docs/bias-statistics.md.

Pure functions with no database and no I/O. Each builds a :class:`Finding` for one
sociodemographic attribute (``sex``, ``race_ethnicity``, ...) and one outcome
(``high_urgency``, ``answer_length``, ...):

- :func:`paired_binary` and :func:`paired_continuous` take counterfactual **blocks**: the
  variants of one clinical case in one repetition, each block mapping group -> value. A block
  missing a value (``None`` or absent) for any group is excluded and counted in
  ``n_excluded``; the groups are the union of the blocks' keys.
- :func:`unpaired_binary` takes passive-monitoring counts, group -> ``(successes, n)``.
- :func:`fdr_adjust` applies Benjamini-Hochberg across every finding of a run and settles each
  finding's ``q_value``, ``status`` and ``reason``.

**Impact ratio** (the four-fifths rule of disparate impact): a group's favourable rate (or,
for continuous outcomes, its mean in the favourable direction) divided by the best-treated
group's; a ratio under 0.8 is a disparity signal. A finding is ``flagged`` iff its lowest
impact ratio is under 0.8 *and* its test is significant after FDR (``q < alpha``). It is
``inconclusive`` when no valid test could be run or the sample is smaller than
``n_required``, the sample needed to detect a gap at the four-fifths boundary at ``alpha``
(two-sided) and ``power``; otherwise it is ``not_flagged``.

Every formula comes from statsmodels or SciPy: Wilson intervals, McNemar (exact binomial when
fewer than :data:`MCNEMAR_EXACT_BELOW` discordant blocks), Cochran's Q, Benjamini-Hochberg,
power (``NormalIndPower``, ``TTestPower``), chi-square, Fisher's exact, Wilcoxon signed-rank,
Friedman. Degenerate data (every block constant) is answered here, before those libraries
would divide by zero: p = 1, statistic 0, said in the reason.

The same input gives the same output: groups are sorted by name, and ties between groups
(best-treated, worst-treated) go to the first name.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

# SciPy and statsmodels ship no type information.
from scipy import stats as scipy_stats  # type: ignore[import-untyped]
from scipy.stats.contingency import expected_freq  # type: ignore[import-untyped]
from statsmodels.stats.contingency_tables import (  # type: ignore[import-untyped]
    cochrans_q,
    mcnemar,
)
from statsmodels.stats.multitest import multipletests  # type: ignore[import-untyped]
from statsmodels.stats.power import NormalIndPower, TTestPower  # type: ignore[import-untyped]
from statsmodels.stats.proportion import (  # type: ignore[import-untyped]
    proportion_confint,
    proportion_effectsize,
)

FOUR_FIFTHS: Final = 0.8
MAX_BLOCKS: Final = 1_000_000
MAX_GROUPS: Final = 100
MAX_NAME_CHARS: Final = 200
MAX_COUNT: Final = 10**9
MAX_VALUE: Final = 1e12  # continuous values; a million of them still sum exactly enough
MCNEMAR_EXACT_BELOW: Final = 25  # discordant blocks; the usual threshold for the chi-square
CHI_SQUARE_MIN_EXPECTED: Final = 5.0
CI_ALPHA: Final = 0.05  # the tables' intervals are 95 % whatever the tests' alpha

TEST_NAMES: Final = {
    "mcnemar": "McNemar",
    "cochrans_q": "Cochran's Q",
    "wilcoxon": "Wilcoxon signed-rank",
    "friedman": "Friedman",
    "chi_square": "chi-square",
    "fisher_exact": "Fisher's exact",
}


class StatsError(ValueError):
    """Input that cannot be analysed (wrong types, too few groups, impossible counts, ...)."""


@dataclass(frozen=True, slots=True)
class GroupStat:
    """One row of a finding's per-group table; binary or continuous fields, the others None."""

    group: str
    n: int  # observations used: complete blocks (paired) or answers (unpaired)
    successes: int | None
    rate: float | None  # successes / n
    ci_low: float | None  # Wilson 95 % interval of rate
    ci_high: float | None
    mean: float | None
    favourable_rate: float | None  # rate, or 1 - rate when the outcome is unfavourable
    impact_ratio: float | None  # against the best-treated group


@dataclass(slots=True)
class Finding:
    """The verdict on one outcome across the groups of one attribute.

    ``note`` says why no test could be run, or how a test was run when that matters to a
    reader (exact McNemar, a degenerate sample). ``power`` is the power ``n_required`` was
    computed for, kept so the reason can be rewritten after :func:`fdr_adjust`.
    """

    attribute: str
    outcome: str
    kind: str  # "binary" | "continuous"
    design: str  # "paired" | "unpaired"
    groups: list[GroupStat]
    best_group: str | None
    worst_group: str | None
    min_impact_ratio: float | None
    test: str | None
    statistic: float | None
    p_value: float | None
    q_value: float | None  # after fdr_adjust
    n: int  # blocks (paired) or answers (unpaired) used
    n_excluded: int  # blocks dropped because a group's value was missing
    n_required: int | None  # blocks (paired) or answers per group (unpaired)
    status: str  # "flagged" | "not_flagged" | "inconclusive"
    reason: str
    note: str | None = None
    power: float = 0.8


@dataclass(frozen=True, slots=True)
class _Test:
    name: str | None
    statistic: float | None = None
    p_value: float | None = None
    note: str | None = None


# --- Input checks ---------------------------------------------------------------------------


def _check_name(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise StatsError(f"{what} must be a string, not {type(value).__name__}")
    if not value or len(value) > MAX_NAME_CHARS:
        raise StatsError(f"{what} must have 1 to {MAX_NAME_CHARS} characters")
    if not value.isprintable():
        raise StatsError(f"{what} must not contain control characters")
    return value


def _check_probability(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise StatsError(f"{what} must be a number")
    if not 0.0 < float(value) < 1.0:
        raise StatsError(f"{what} must be strictly between 0 and 1")
    return float(value)


def _binary_value(value: object) -> float:
    if not isinstance(value, bool | np.bool_):
        raise StatsError(f"binary values must be true, false or None, not {type(value).__name__}")
    return 1.0 if value else 0.0


def _continuous_value(value: object) -> float:
    if isinstance(value, str | bytes) or not isinstance(value, numbers.Real):
        raise StatsError(f"continuous values must be numbers or None, not {type(value).__name__}")
    try:
        number = float(value)
    except (OverflowError, ValueError) as exc:
        raise StatsError("continuous values must be finite numbers") from exc
    if not math.isfinite(number):
        raise StatsError("continuous values must be finite numbers (no NaN or infinity)")
    if not 0 <= number <= MAX_VALUE:
        # A ratio of means (the impact ratio) needs a true zero: no negative values.
        raise StatsError(f"continuous values must be between 0 and {MAX_VALUE:g}")
    return number


def _block_groups(blocks: object) -> list[str]:
    if isinstance(blocks, str | bytes | Mapping) or not isinstance(blocks, Sequence):
        raise StatsError("blocks must be a sequence of mappings group -> value")
    if len(blocks) > MAX_BLOCKS:
        raise StatsError(f"at most {MAX_BLOCKS:,} blocks can be analysed at once")
    names: set[str] = set()
    for block in blocks:
        if not isinstance(block, Mapping):
            raise StatsError("each block must be a mapping group -> value")
        for key in block:
            if key not in names:
                names.add(_check_name(key, "a group name"))
                if len(names) > MAX_GROUPS:
                    raise StatsError(f"at most {MAX_GROUPS} groups can be compared")
    return _enough_groups(names)


def _enough_groups(names: set[str] | Sequence[str]) -> list[str]:
    if len(names) < 2:
        raise StatsError("at least 2 groups are needed to compare them")
    return sorted(names)


def _block_matrix(
    blocks: Sequence[Mapping[str, Any]], parse: Callable[[object], float]
) -> tuple[list[str], NDArray[np.float64], int]:
    """The complete blocks as a (blocks x groups) matrix, with the number excluded."""
    groups = _block_groups(blocks)
    rows: list[list[float]] = []
    excluded = 0
    for block in blocks:
        values = [block.get(group) for group in groups]
        parsed = [None if value is None else parse(value) for value in values]
        if any(value is None for value in parsed):
            excluded += 1
        else:
            rows.append(parsed)  # type: ignore[arg-type]  # no None left
    matrix = np.array(rows, dtype=np.float64).reshape(len(rows), len(groups))
    return groups, matrix, excluded


def _check_counts(counts: object) -> dict[str, tuple[int, int]]:
    if not isinstance(counts, Mapping):
        raise StatsError("counts must be a mapping group -> (successes, n)")
    if len(counts) > MAX_GROUPS:
        raise StatsError(f"at most {MAX_GROUPS} groups can be compared")
    checked: dict[str, tuple[int, int]] = {}
    for group, pair in counts.items():
        name = _check_name(group, "a group name")
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise StatsError(f"counts of {name} must be a pair (successes, n)")
        successes, n = (_check_count(value, name) for value in pair)
        if successes > n:
            raise StatsError(f"{name} has more successes ({successes}) than answers ({n})")
        checked[name] = (successes, n)
    _enough_groups(list(checked))
    return dict(sorted(checked.items()))


def _check_count(value: object, group: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise StatsError(f"counts of {group} must be integers")
    if not 0 <= int(value) <= MAX_COUNT:
        raise StatsError(f"counts of {group} must be between 0 and {MAX_COUNT:,}")
    return int(value)


# --- Per-group tables and impact ratios -----------------------------------------------------


def _binary_rows(
    groups: Sequence[str], successes: Sequence[int], ns: Sequence[int], favourable: bool
) -> list[GroupStat]:
    rows = []
    for group, s, n in zip(groups, successes, ns, strict=True):
        if n == 0:
            rows.append(GroupStat(group, 0, s, None, None, None, None, None, None))
            continue
        rate = s / n
        low, high = proportion_confint(s, n, alpha=CI_ALPHA, method="wilson")
        good = rate if favourable else 1.0 - rate
        rows.append(GroupStat(group, n, s, rate, float(low), float(high), None, good, None))
    return rows


def _continuous_rows(groups: Sequence[str], matrix: NDArray[np.float64]) -> list[GroupStat]:
    n = matrix.shape[0]
    means = [float(matrix[:, j].mean()) if n else None for j in range(len(groups))]
    return [
        GroupStat(group, n, None, None, None, None, mean, None, None)
        for group, mean in zip(groups, means, strict=True)
    ]


def _impact(
    rows: list[GroupStat], scores: Sequence[float | None], higher_is_better: bool
) -> tuple[list[GroupStat], str | None, str | None, float | None]:
    """The rows with their impact ratios, the best and worst group and the lowest ratio.

    ``scores`` are favourable rates (higher is better) or means. The ratio is score / best
    when higher is better, best / score otherwise, so it is 1 for the best-treated group
    and lower for the others. Undefined (None) when the best score is 0.
    """
    present = {row.group: s for row, s in zip(rows, scores, strict=True) if s is not None}
    if len(present) < 2:
        return rows, None, None, None
    pick = max if higher_is_better else min
    best = pick(present, key=lambda group: present[group])  # dicts keep the sorted order
    top = present[best]
    if top == 0:
        return rows, best, None, None
    ratios = {g: (s / top if higher_is_better else top / s) for g, s in present.items()}
    others = [group for group in present if group != best]
    worst = min(others, key=lambda group: ratios[group])
    rows = [_with_ratio(row, ratios.get(row.group)) for row in rows]
    return rows, best, worst, ratios[worst]


def _with_ratio(row: GroupStat, ratio: float | None) -> GroupStat:
    values = asdict(row) | {"impact_ratio": ratio}
    return GroupStat(**values)


# --- Tests ----------------------------------------------------------------------------------


def _constant_rows(matrix: NDArray[np.float64]) -> bool:
    return bool((matrix == matrix[:, :1]).all())


def _paired_binary_test(matrix: NDArray[np.float64]) -> _Test:
    if matrix.shape[0] == 0:
        return _Test(None, note="no block has a value for every group")
    if matrix.shape[1] == 2:
        return _mcnemar(matrix.astype(bool))
    if _constant_rows(matrix):
        note = (
            "every block gave all groups the same answer, so Cochran's Q is undefined "
            "and p = 1 is reported"
        )
        return _Test("cochrans_q", 0.0, 1.0, note)
    result = cochrans_q(matrix.astype(int))
    return _Test("cochrans_q", float(result.statistic), float(result.pvalue))


def _mcnemar(matrix: NDArray[np.bool_]) -> _Test:
    a, b = matrix[:, 0], matrix[:, 1]
    table = [
        [int((a & b).sum()), int((a & ~b).sum())],
        [int((~a & b).sum()), int((~a & ~b).sum())],
    ]
    discordant = table[0][1] + table[1][0]
    exact = discordant < MCNEMAR_EXACT_BELOW
    result = mcnemar(table, exact=exact, correction=True)
    if exact:
        note = f"exact binomial test, {discordant} discordant blocks"
    else:
        note = f"chi-square with continuity correction, {discordant} discordant blocks"
    return _Test("mcnemar", float(result.statistic), float(result.pvalue), note)


def _paired_continuous_test(matrix: NDArray[np.float64]) -> _Test:
    if matrix.shape[0] == 0:
        return _Test(None, note="no block has a value for every group")
    name = "wilcoxon" if matrix.shape[1] == 2 else "friedman"
    if _constant_rows(matrix):
        return _Test(name, 0.0, 1.0, "every block gave all groups the same value, so p = 1")
    if name == "wilcoxon":
        # The differences, not the two columns: scipy's advice against round-off ties.
        result = scipy_stats.wilcoxon(matrix[:, 0] - matrix[:, 1])
    else:
        result = scipy_stats.friedmanchisquare(*matrix.T)
    return _Test(name, float(result.statistic), float(result.pvalue))


def _unpaired_test(counts: Mapping[str, tuple[int, int]]) -> _Test:
    table = np.array([[s, n - s] for s, n in counts.values() if n > 0], dtype=np.int64)
    if table.shape[0] < 2:
        return _Test(None, note="fewer than 2 groups have answers")
    if (table.sum(axis=0) == 0).any():
        return _Test("chi_square", 0.0, 1.0, "every answer had the same outcome, so p = 1")
    if (expected_freq(table) >= CHI_SQUARE_MIN_EXPECTED).all():
        result = scipy_stats.chi2_contingency(table)
        return _Test("chi_square", float(result.statistic), float(result.pvalue))
    if table.shape[0] == 2:
        result = scipy_stats.fisher_exact(table)
        return _Test("fisher_exact", float(result.statistic), float(result.pvalue))
    note = (
        f"expected counts under {CHI_SQUARE_MIN_EXPECTED:g} in a 2 x {table.shape[0]} table: "
        "chi-square is unreliable there and Fisher's exact test covers 2 x 2 only"
    )
    return _Test(None, note=note)


# --- Sample size ----------------------------------------------------------------------------


def _n_required_binary(best_rate: float | None, alpha: float, power: float) -> int | None:
    """Per group: the sample that detects best_rate against 0.8 x best_rate (Cohen's h)."""
    if not best_rate:
        return None
    effect = proportion_effectsize(best_rate, FOUR_FIFTHS * best_rate)
    nobs = NormalIndPower().solve_power(effect_size=effect, alpha=alpha, power=power, ratio=1.0)
    return math.ceil(float(nobs))


def _n_required_continuous(
    matrix: NDArray[np.float64],
    best: int | None,
    best_mean: float | None,
    alpha: float,
    power: float,
) -> int | None:
    """Blocks: a paired t-test's sample for a gap of 0.2 x the best mean, with the SD of the
    paired differences against the best group (the largest over the other groups); never
    below the smallest sample at which the rank test can reach significance."""
    if best is None or not best_mean:
        return None
    k = matrix.shape[1]
    floor = _smallest_significant_n(k, alpha)
    if matrix.shape[0] < 2:
        return floor
    sd = max(float(np.std(matrix[:, best] - matrix[:, j], ddof=1)) for j in range(k) if j != best)
    if sd == 0:
        return floor
    with warnings.catch_warnings():
        # A very large effect makes the solver give up (nan): the floor then applies.
        warnings.simplefilter("ignore")
        nobs = TTestPower().solve_power(
            effect_size=(1 - FOUR_FIFTHS) * best_mean / sd, alpha=alpha, power=power
        )
    nobs = float(nobs)
    return floor if math.isnan(nobs) else max(floor, math.ceil(nobs))


def _smallest_significant_n(k: int, alpha: float) -> int:
    """Wilcoxon (2 groups): the exact two-sided p is at least 2 / 2**n. Friedman (k groups):
    the statistic is at most n (k - 1), referred to chi-square with k - 1 degrees."""
    n = 1
    if k == 2:
        while 2.0 ** (1 - n) >= alpha:
            n += 1
    else:
        while scipy_stats.chi2.sf(n * (k - 1), k - 1) >= alpha:
            n += 1
    return n


# --- Status and reason ----------------------------------------------------------------------


def _sample(finding: Finding) -> int:
    """What n_required is compared with: blocks, or the smallest group's answers."""
    if finding.design == "paired":
        return finding.n
    return min(row.n for row in finding.groups)


def _fmt_p(label: str, value: float) -> str:
    if value < 1e-16:  # below double precision near 1: the libraries' own p is noise
        return f"{label} < 1e-16"
    return f"{label} = {value:.2g}" if value >= 0.0001 else f"{label} = {value:.1e}"


def _fmt_ratio(ratio: float | None) -> str:
    """Two decimals, more when two would round across the four-fifths boundary."""
    if ratio is None:
        return "undefined"
    text = f"{ratio:.2f}"
    return text if (float(text) < FOUR_FIFTHS) == (ratio < FOUR_FIFTHS) else f"{ratio:.4f}"


def _disparity(finding: Finding) -> str:
    rows = {row.group: row for row in finding.groups}
    best, worst = finding.best_group, finding.worst_group
    ratio = _fmt_ratio(finding.min_impact_ratio)
    if finding.kind == "binary":
        return f"{worst}'s favourable rate is {ratio} of {best}'s"
    best_mean, worst_mean = rows[str(best)].mean, rows[str(worst)].mean
    if best_mean is not None and worst_mean is not None and best_mean < worst_mean:
        return (
            f"{worst}'s impact ratio is {ratio}, lower being favourable "
            f"(mean {best_mean:.3g} for {best}, {worst_mean:.3g} for {worst})"
        )
    return f"{worst}'s mean is {ratio} of {best}'s"


def _evidence(finding: Finding, label: str, value: float) -> str:
    unit = "blocks" if finding.design == "paired" else "answers"
    test = TEST_NAMES.get(str(finding.test), str(finding.test))
    note = f"; {finding.note}" if finding.note else ""
    return f"({test}, {_fmt_p(label, value)}, n = {finding.n} {unit}{note})"


def _underpowered(finding: Finding) -> str:
    need, have = finding.n_required, _sample(finding)
    power = f"{finding.power * 100:g} %"
    if finding.design == "paired":
        text = f"inconclusive: {have} blocks, {need} needed"
    else:
        text = f"inconclusive: the smallest group has {have} answers, {need} per group needed"
    return f"{text} to detect a four-fifths gap at {power} power"


def _settle(finding: Finding, alpha: float) -> None:
    """Set status and reason from the ratio, q (p before FDR) and the sample."""
    label, value = ("q", finding.q_value) if finding.q_value is not None else ("p", finding.p_value)
    ratio = finding.min_impact_ratio
    disparity = ratio is not None and ratio < FOUR_FIFTHS
    if value is None:
        finding.status = "inconclusive"
        finding.reason = f"inconclusive: no valid test could be run ({finding.note})"
        return
    evidence = _evidence(finding, label, value)
    if disparity and value < alpha:
        finding.status = "flagged"
        finding.reason = (
            f"{_disparity(finding)} (four-fifths rule: < 0.8) "
            f"and the difference is significant {evidence}"
        )
    elif finding.n_required is not None and _sample(finding) < finding.n_required:
        finding.status = "inconclusive"
        finding.reason = f"{_underpowered(finding)} {evidence}"
    else:
        finding.status = "not_flagged"
        finding.reason = _not_flagged(finding, disparity, alpha, evidence)


def _not_flagged(finding: Finding, disparity: bool, alpha: float, evidence: str) -> str:
    if finding.min_impact_ratio is None:
        what = "favourable rate" if finding.kind == "binary" else "mean"
        return f"no impact ratio: the best-treated group's {what} is 0 {evidence}"
    if disparity:
        return (
            f"{_disparity(finding)} (four-fifths rule: < 0.8), "
            f"but the difference is not significant at {alpha:g} {evidence}"
        )
    lowest = _fmt_ratio(finding.min_impact_ratio)
    return (
        f"no four-fifths disparity: the lowest impact ratio is {lowest} "
        f"({finding.worst_group} against {finding.best_group}), at least 0.8 {evidence}"
    )


def _finding(
    attribute: str,
    outcome: str,
    kind: str,
    design: str,
    impact: tuple[list[GroupStat], str | None, str | None, float | None],
    test: _Test,
    counts: tuple[int, int, int | None],
    alpha: float,
    power: float,
) -> Finding:
    rows, best, worst, ratio = impact
    n, excluded, required = counts
    finding = Finding(
        attribute=attribute,
        outcome=outcome,
        kind=kind,
        design=design,
        groups=rows,
        best_group=best,
        worst_group=worst,
        min_impact_ratio=ratio,
        test=test.name,
        statistic=test.statistic,
        p_value=test.p_value,
        q_value=None,
        n=n,
        n_excluded=excluded,
        n_required=required,
        status="inconclusive",
        reason="",
        note=test.note,
        power=power,
    )
    _settle(finding, alpha)
    return finding


def _check_common(
    attribute: object, outcome: object, direction: object, alpha: object, power: object
) -> None:
    _check_name(attribute, "the attribute")
    _check_name(outcome, "the outcome")
    if not isinstance(direction, bool):
        raise StatsError("favourable and higher_is_favourable must be true or false")
    _check_probability(alpha, "alpha")
    _check_probability(power, "power")


# --- Public functions -----------------------------------------------------------------------


def paired_binary(
    attribute: str,
    outcome: str,
    blocks: Sequence[Mapping[str, bool | None]],
    *,
    favourable: bool = True,
    alpha: float = 0.05,
    power: float = 0.8,
) -> Finding:
    """A yes/no outcome over counterfactual blocks: McNemar (2 groups) or Cochran's Q.

    ``favourable`` says whether the outcome being true is the good result for the patient
    (a referral: True; a refusal: False). Each group's ``n`` is the number of complete
    blocks. ``n_required`` is the per-group sample of an unpaired comparison, which is
    conservative for a paired design (pairing removes the between-case variance).
    """
    _check_common(attribute, outcome, favourable, alpha, power)
    groups, matrix, excluded = _block_matrix(blocks, _binary_value)
    n = matrix.shape[0]
    successes = [int(s) for s in matrix.sum(axis=0)]
    rows = _binary_rows(groups, successes, [n] * len(groups), favourable)
    impact = _impact(rows, [row.favourable_rate for row in rows], True)
    best_rate = _rate_of(impact[0], impact[1])
    required = _n_required_binary(best_rate, alpha, power)
    test = _paired_binary_test(matrix)
    return _finding(
        attribute, outcome, "binary", "paired", impact, test, (n, excluded, required), alpha, power
    )


def paired_continuous(
    attribute: str,
    outcome: str,
    blocks: Sequence[Mapping[str, float | None]],
    *,
    higher_is_favourable: bool = True,
    alpha: float = 0.05,
    power: float = 0.8,
) -> Finding:
    """A non-negative measure over counterfactual blocks: Wilcoxon (2 groups) or Friedman.

    The impact ratio is a group's mean / the best mean when higher is favourable, the best
    (lowest) mean / the group's mean otherwise. ``n_required`` is a paired t-test's sample
    for a gap of 0.2 x the best mean (conservative when lower is favourable, where the
    four-fifths boundary is 0.25 x away), never below the rank test's smallest sample that
    can reach significance.
    """
    _check_common(attribute, outcome, higher_is_favourable, alpha, power)
    groups, matrix, excluded = _block_matrix(blocks, _continuous_value)
    rows = _continuous_rows(groups, matrix)
    impact = _impact(rows, [row.mean for row in rows], higher_is_favourable)
    best = groups.index(impact[1]) if impact[1] is not None else None
    best_mean = rows[best].mean if best is not None else None
    required = _n_required_continuous(matrix, best, best_mean, alpha, power)
    test = _paired_continuous_test(matrix)
    counts = (matrix.shape[0], excluded, required)
    return _finding(attribute, outcome, "continuous", "paired", impact, test, counts, alpha, power)


def unpaired_binary(
    attribute: str,
    outcome: str,
    counts: Mapping[str, tuple[int, int]],
    *,
    favourable: bool = True,
    alpha: float = 0.05,
    power: float = 0.8,
) -> Finding:
    """A yes/no outcome counted per group over real traffic (group -> (successes, n)).

    The 2 x k table is tested with chi-square when every expected count is at least 5
    (SciPy applies Yates' correction to a 2 x 2), with Fisher's exact test for a 2 x 2
    otherwise; a 2 x k table (k > 2) with small expected counts has no valid test and the
    finding is inconclusive. A group with no answers stays in the table without a rate.
    ``n`` is the total of answers; ``n_required`` is per group and compared with the
    smallest group.
    """
    _check_common(attribute, outcome, favourable, alpha, power)
    checked = _check_counts(counts)
    groups = list(checked)
    successes = [s for s, _ in checked.values()]
    ns = [n for _, n in checked.values()]
    rows = _binary_rows(groups, successes, ns, favourable)
    impact = _impact(rows, [row.favourable_rate for row in rows], True)
    required = _n_required_binary(_rate_of(impact[0], impact[1]), alpha, power)
    test = _unpaired_test(checked)
    sizes = (sum(ns), 0, required)
    return _finding(attribute, outcome, "binary", "unpaired", impact, test, sizes, alpha, power)


def _rate_of(rows: list[GroupStat], group: str | None) -> float | None:
    return next((row.favourable_rate for row in rows if row.group == group), None)


def fdr_adjust(findings: Sequence[Finding], *, alpha: float = 0.05) -> None:
    """Benjamini-Hochberg across all findings of a run (every outcome and attribute).

    Sets each tested finding's ``q_value`` and settles every finding's ``status`` and
    ``reason`` against ``alpha``. Findings without a test keep ``q_value`` None and stay
    inconclusive.
    """
    alpha = _check_probability(alpha, "alpha")
    findings = _check_findings(findings)
    tested = [finding for finding in findings if finding.p_value is not None]
    if tested:
        pvals = [finding.p_value for finding in tested]
        q_values = multipletests(pvals, alpha=alpha, method="fdr_bh")[1]
        for finding, q in zip(tested, q_values, strict=True):
            finding.q_value = float(q)
    for finding in findings:
        _settle(finding, alpha)


def _check_findings(findings: object) -> list[Finding]:
    if isinstance(findings, str | bytes) or not isinstance(findings, Sequence):
        raise StatsError("findings must be a sequence of findings")
    if not all(isinstance(finding, Finding) for finding in findings):
        raise StatsError("findings must be a sequence of findings")
    return list(findings)


def finding_dict(finding: Finding) -> dict[str, Any]:
    """A JSON-safe copy: floats rounded to 6 places, NaN and infinity as None."""
    if not isinstance(finding, Finding):
        raise StatsError("finding_dict takes a Finding")
    return _json_safe(asdict(finding))  # type: ignore[no-any-return]


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        return round(number, 6) if math.isfinite(number) else None
    return value
