"""The statistics of bias detection, checked against textbook values and the libraries."""

from __future__ import annotations

import json
import math
import random
import warnings
from typing import Any

import numpy as np
import pytest
from scipy import stats as scipy_stats  # type: ignore[import-untyped]
from statsmodels.stats.contingency_tables import cochrans_q  # type: ignore[import-untyped]
from statsmodels.stats.multitest import multipletests  # type: ignore[import-untyped]
from statsmodels.stats.power import NormalIndPower, TTestPower  # type: ignore[import-untyped]
from statsmodels.stats.proportion import (  # type: ignore[import-untyped]
    proportion_confint,
    proportion_effectsize,
)

from compliance.bias.stats import (
    MAX_BLOCKS,
    Finding,
    StatsError,
    fdr_adjust,
    finding_dict,
    paired_binary,
    paired_continuous,
    unpaired_binary,
)

# Every test here must run without a library warning (a division by zero, a failed solver).
pytestmark = pytest.mark.filterwarnings("error")


def pairs(*rows: tuple[bool, bool, int]) -> list[dict[str, bool | None]]:
    """Blocks female/male from (female, male, how many) rows."""
    return [{"female": f, "male": m} for f, m, count in rows for _ in range(count)]


def n_per_group(rate: float) -> int:
    effect = proportion_effectsize(rate, 0.8 * rate)
    nobs = NormalIndPower().solve_power(effect_size=effect, alpha=0.05, power=0.8)
    return math.ceil(float(nobs))


# --- Per-group tables ---


def test_the_wilson_interval_of_8_out_of_10_is_the_textbook_one():
    blocks = pairs((True, True, 8), (False, False, 2))
    row = paired_binary("sex", "imaging_referral", blocks).groups[0]
    assert (row.successes, row.n, row.rate) == (8, 10, 0.8)
    # Wilson (1927) 95 % interval of 8/10: 0.4902 to 0.9433.
    assert row.ci_low == pytest.approx(0.4902, abs=1e-4)
    assert row.ci_high == pytest.approx(0.9433, abs=1e-4)
    assert (row.ci_low, row.ci_high) == proportion_confint(8, 10, method="wilson")


def test_groups_are_sorted_and_the_output_does_not_depend_on_key_order():
    rng = random.Random(7)
    blocks = [{g: rng.random() < 0.5 for g in ("white", "black", "asian")} for _ in range(50)]
    shuffled = [dict(reversed(list(block.items()))) for block in blocks]
    first = finding_dict(paired_binary("race_ethnicity", "high_urgency", blocks))
    assert [row["group"] for row in first["groups"]] == ["asian", "black", "white"]
    assert finding_dict(paired_binary("race_ethnicity", "high_urgency", shuffled)) == first


def test_a_block_missing_a_value_is_excluded_and_counted():
    incomplete: list[dict[str, bool | None]] = [{"female": None, "male": True}, {"male": False}]
    blocks = [*pairs((True, False, 10)), *incomplete]
    finding = paired_binary("sex", "refusal", blocks)
    assert (finding.n, finding.n_excluded) == (10, 2)
    assert [row.n for row in finding.groups] == [10, 10]


def test_favourable_false_flips_the_impact_ratios():
    blocks = pairs((True, False, 6), (False, False, 4))  # female refused 6/10, male 0/10
    as_good = paired_binary("sex", "refusal", blocks, favourable=True)
    as_bad = paired_binary("sex", "refusal", blocks, favourable=False)
    assert as_good.best_group == "female"
    assert as_good.min_impact_ratio == 0.0  # male never gets the "good" result
    assert as_bad.best_group == "male"
    assert [row.favourable_rate for row in as_bad.groups] == [pytest.approx(0.4), 1.0]
    assert as_bad.worst_group == "female"
    assert as_bad.min_impact_ratio == pytest.approx(0.4)


def test_no_impact_ratio_when_no_group_has_the_favourable_result():
    finding = paired_binary("sex", "imaging_referral", pairs((False, False, 50)))
    assert finding.min_impact_ratio is None
    assert all(row.impact_ratio is None for row in finding.groups)
    assert finding.n_required is None
    assert finding.status == "not_flagged"
    assert "favourable rate is 0" in finding.reason


# --- Paired binary tests ---


def test_mcnemar_is_exact_when_discordant_blocks_are_few():
    # b = 1, c = 9: two-sided binomial p = 2 * P(X <= 1 | 10, 1/2) = 2 * 11 / 1024.
    blocks = pairs((True, True, 20), (True, False, 1), (False, True, 9), (False, False, 10))
    finding = paired_binary("sex", "imaging_referral", blocks)
    assert finding.test == "mcnemar"
    assert finding.statistic == 1
    assert finding.p_value == pytest.approx(22 / 1024)
    assert "exact binomial" in str(finding.note)


def test_mcnemar_uses_the_corrected_chi_square_for_many_discordant_blocks():
    blocks = pairs((True, False, 10), (False, True, 30), (True, True, 5))
    finding = paired_binary("sex", "imaging_referral", blocks)
    statistic = (abs(10 - 30) - 1) ** 2 / 40  # Edwards' continuity correction
    assert finding.statistic == pytest.approx(statistic)
    assert finding.p_value == pytest.approx(scipy_stats.chi2.sf(statistic, 1))


def test_cochrans_q_matches_the_textbook_formula():
    rng = random.Random(3)
    groups = ("private", "public", "uninsured")
    rates = {"private": 0.8, "public": 0.6, "uninsured": 0.3}
    blocks = [{g: rng.random() < rates[g] for g in groups} for _ in range(30)]
    x = np.array([[block[g] for g in groups] for block in blocks], dtype=int)
    k, columns, rows = 3, x.sum(axis=0), x.sum(axis=1)
    total = x.sum()
    q = (k - 1) * (k * (columns**2).sum() - total**2) / (k * total - (rows**2).sum())
    finding = paired_binary("insurance", "imaging_referral", blocks)
    assert finding.test == "cochrans_q"
    assert finding.statistic == pytest.approx(q)
    assert finding.p_value == pytest.approx(scipy_stats.chi2.sf(q, k - 1))
    assert finding.p_value == pytest.approx(cochrans_q(x).pvalue)


def test_cochrans_q_on_constant_blocks_reports_p_1_and_says_why():
    blocks = [{"a": v, "b": v, "c": v} for v in [True, False] * 200]
    finding = paired_binary("insurance", "high_urgency", blocks)
    assert (finding.test, finding.statistic, finding.p_value) == ("cochrans_q", 0.0, 1.0)
    assert "Cochran's Q is undefined" in finding.reason
    assert finding.status == "not_flagged"


def test_a_clearly_biased_paired_sample_is_flagged():
    blocks = pairs((True, True, 15), (False, True, 21), (False, False, 4))  # 15/40 vs 36/40
    finding = paired_binary("sex", "imaging_referral", blocks)
    assert finding.min_impact_ratio == pytest.approx(15 / 36)
    assert finding.p_value == pytest.approx(2 * 0.5**21)
    assert finding.status == "flagged"
    assert finding.reason.startswith("female's favourable rate is 0.42 of male's")
    assert "McNemar, p = " in finding.reason and "n = 40 blocks" in finding.reason


def test_a_fair_paired_sample_is_not_flagged():
    blocks = pairs((True, True, 180), (True, False, 20), (False, True, 20), (False, False, 180))
    finding = paired_binary("sex", "imaging_referral", blocks)
    assert finding.n_required == n_per_group(0.5) <= 400
    assert finding.p_value == pytest.approx(scipy_stats.chi2.sf((0 - 1) ** 2 / 40, 1))
    assert finding.status == "not_flagged"
    assert "no four-fifths disparity" in finding.reason


def test_a_small_sample_is_inconclusive_and_says_what_is_needed():
    blocks = pairs((True, True, 2), (False, True, 1), (False, False, 3))
    finding = paired_binary("sex", "imaging_referral", blocks)
    needed = n_per_group(0.5)  # male's 3/6 is the best favourable rate
    assert finding.n_required == needed
    assert finding.status == "inconclusive"
    assert finding.reason.startswith(
        f"inconclusive: 6 blocks, {needed} needed to detect a four-fifths gap at 80 % power"
    )


def test_no_complete_block_means_no_test():
    finding = paired_binary("sex", "refusal", [{"female": True}, {"male": False}])
    assert (finding.n, finding.n_excluded, finding.p_value) == (0, 2, None)
    assert finding.status == "inconclusive"
    assert "no valid test" in finding.reason


# --- Paired continuous tests ---


def test_wilcoxon_matches_scipy_and_the_impact_ratio_is_of_means():
    rng = random.Random(11)
    blocks = [
        {"female": 80 + rng.random() * 40, "male": 100 + rng.random() * 40} for _ in range(30)
    ]
    finding = paired_continuous("sex", "answer_length", blocks)
    female = np.array([b["female"] for b in blocks])
    male = np.array([b["male"] for b in blocks])
    expected = scipy_stats.wilcoxon(female - male)
    assert finding.test == "wilcoxon"
    assert finding.statistic == pytest.approx(expected.statistic)
    assert finding.p_value == pytest.approx(expected.pvalue)
    assert finding.min_impact_ratio == pytest.approx(female.mean() / male.mean())
    effect = 0.2 * male.mean() / np.std(male - female, ddof=1)
    nobs = TTestPower().solve_power(effect_size=effect, alpha=0.05, power=0.8)
    assert finding.n_required == max(6, math.ceil(nobs))


def test_friedman_matches_scipy_and_lower_can_be_favourable():
    rng = random.Random(5)
    groups = {"asian": 50, "black": 70, "white": 52}  # e.g. seconds until a referral
    blocks = [{g: base + rng.random() * 10 for g, base in groups.items()} for _ in range(20)]
    finding = paired_continuous("race", "wait", blocks, higher_is_favourable=False)
    columns = [[b[g] for b in blocks] for g in sorted(groups)]
    expected = scipy_stats.friedmanchisquare(*columns)
    assert finding.test == "friedman"
    assert finding.p_value == pytest.approx(expected.pvalue)
    means = {g: np.mean(c) for g, c in zip(sorted(groups), columns, strict=True)}
    assert finding.best_group == "asian"
    assert finding.worst_group == "black"
    assert finding.min_impact_ratio == pytest.approx(means["asian"] / means["black"])
    assert finding.status == "flagged"


def test_all_equal_continuous_data_gives_p_1_without_warnings():
    for groups in (("a", "b"), ("a", "b", "c")):
        blocks = [dict.fromkeys(groups, float(i)) for i in range(1, 21)]
        finding = paired_continuous("sex", "answer_length", blocks)
        assert (finding.statistic, finding.p_value) == (0.0, 1.0)
        assert finding.min_impact_ratio == 1.0
        assert finding.status == "not_flagged"


def test_constant_differences_need_the_smallest_sample_the_rank_test_can_use():
    # SD of the differences is 0; Wilcoxon's exact p is at least 2 / 2**n: 6 blocks for 0.05.
    five = paired_continuous("sex", "answer_length", [{"a": 10, "b": 5}] * 5)
    six = paired_continuous("sex", "answer_length", [{"a": 10, "b": 5}] * 6)
    assert five.n_required == six.n_required == 6
    assert five.p_value == pytest.approx(2 / 2**5)
    assert five.status == "inconclusive"
    assert six.p_value == pytest.approx(2 / 2**6)
    assert six.status == "flagged"


def test_booleans_are_numbers_for_continuous_outcomes():
    finding = paired_continuous("sex", "answer_length", [{"a": True, "b": 0.5}] * 3)
    assert [row.mean for row in finding.groups] == [1.0, 0.5]


# --- Unpaired ---


def test_unpaired_uses_chi_square_when_expected_counts_are_large():
    counts = {"female": (30, 100), "male": (50, 100)}
    finding = unpaired_binary("sex", "imaging_referral", counts)
    expected = scipy_stats.chi2_contingency([[30, 70], [50, 50]])
    assert finding.test == "chi_square"
    assert finding.p_value == pytest.approx(expected.pvalue)
    assert finding.n == 200
    assert finding.min_impact_ratio == pytest.approx(0.6)


def test_unpaired_uses_fishers_exact_for_a_small_2x2():
    counts = {"female": (1, 10), "male": (7, 10)}
    finding = unpaired_binary("sex", "imaging_referral", counts)
    expected = scipy_stats.fisher_exact([[1, 9], [7, 3]])
    assert finding.test == "fisher_exact"
    assert finding.p_value == pytest.approx(expected.pvalue)


def test_unpaired_small_2xk_has_no_valid_test():
    counts = {"a": (1, 10), "b": (7, 10), "c": (3, 10)}
    finding = unpaired_binary("insurance", "imaging_referral", counts)
    assert (finding.test, finding.p_value) == (None, None)
    assert finding.status == "inconclusive"
    assert "Fisher's exact test covers 2 x 2 only" in finding.reason


def test_unpaired_compares_the_smallest_group_with_the_sample_needed():
    counts = {"female": (240, 600), "male": (20, 50)}
    finding = unpaired_binary("sex", "imaging_referral", counts)
    assert finding.n_required == n_per_group(0.4)
    assert finding.status == "inconclusive"
    assert "the smallest group has 50 answers" in finding.reason


def test_unpaired_group_without_answers_stays_in_the_table():
    counts = {"a": (0, 0), "b": (40, 100), "c": (45, 100)}
    finding = unpaired_binary("insurance", "imaging_referral", counts)
    assert finding.groups[0].rate is None and finding.groups[0].impact_ratio is None
    assert finding.test == "chi_square"
    assert finding.status == "inconclusive"


# --- Reasons ---


def test_a_ratio_just_under_four_fifths_is_not_printed_as_080():
    finding = unpaired_binary("sex", "referral", {"f": (7995, 10000), "m": (10000, 10000)})
    assert finding.status == "flagged"
    assert "f's favourable rate is 0.7995 of m's" in finding.reason
    assert "p < 1e-16" in finding.reason  # SciPy's p underflows to 0 here


# --- FDR and the final status ---


def test_fdr_turns_a_borderline_p_into_not_flagged():
    # 59/85 against 74/85: a ratio of 0.80 - 0.003 on just the sample needed (85 per group).
    borderline = unpaired_binary("sex", "imaging_referral", {"f": (59, 85), "m": (74, 85)})
    assert borderline.n_required == 85
    assert 0.009 < (borderline.p_value or 0) < 0.01
    assert borderline.status == "flagged"
    assert "p = " in borderline.reason
    others = [
        unpaired_binary("sex", f"outcome_{i}", {"f": (500 + i, 1000), "m": (500, 1000)})
        for i in range(5)
    ]
    run = [borderline, *others]
    fdr_adjust(run)
    expected = multipletests([f.p_value for f in run], method="fdr_bh")[1]
    assert [f.q_value for f in run] == pytest.approx(list(expected))
    assert (borderline.q_value or 0) >= 0.05
    assert borderline.status == "not_flagged"
    assert "not significant" in borderline.reason and "q = " in borderline.reason


def test_fdr_leaves_untested_findings_inconclusive():
    untested = unpaired_binary("insurance", "x", {"a": (1, 10), "b": (7, 10), "c": (3, 10)})
    fdr_adjust([untested])
    assert untested.q_value is None
    assert untested.status == "inconclusive"


# --- JSON ---


def test_finding_dict_is_json_safe():
    # Fisher's statistic is the odds ratio, infinite here.
    finding = unpaired_binary("sex", "referral", {"f": (10, 10), "m": (3, 10)})
    assert finding.statistic == math.inf
    data = finding_dict(finding)
    assert data["statistic"] is None
    text = json.dumps(data, allow_nan=False)
    assert json.loads(text)["groups"][1]["ci_low"] == round(finding.groups[1].ci_low or 0, 6)


# --- Hostile input ---


@pytest.mark.parametrize(
    "blocks",
    [
        [{"a": True}],  # one group
        [],
        "ab",
        {"a": True, "b": False},
        [["a", True]],
        [{"a": "yes", "b": True}],
        [{"a": 1, "b": True}],
        [{"a": [[[True]]], "b": True}],
        [{1: True, "b": False}],
        [{"a\x00": True, "b": False}],
        [{"": True, "b": False}],
        [{"x" * 201: True, "b": False}],
        [{f"g{i}": True for i in range(101)}],
    ],
)
def test_bad_binary_blocks_raise_stats_error(blocks):
    with pytest.raises(StatsError):
        paired_binary("sex", "refusal", blocks)


@pytest.mark.parametrize(
    "value",
    [math.nan, math.inf, -1.0, 1e300, "12", b"12", 10**400, [1.0], {"v": 1}, complex(1, 0)],
)
def test_bad_continuous_values_raise_stats_error(value):
    with pytest.raises(StatsError):
        paired_continuous("sex", "answer_length", [{"a": value, "b": 1.0}])


def test_more_than_a_million_blocks_are_refused():
    with pytest.raises(StatsError, match="1,000,000"):
        paired_binary("sex", "refusal", [{"a": True, "b": False}] * (MAX_BLOCKS + 1))


@pytest.mark.parametrize(
    "counts",
    [
        {"a": (5, 10)},
        {"a": (11, 10), "b": (1, 10)},
        {"a": (-1, 10), "b": (1, 10)},
        {"a": (1, -10), "b": (1, 10)},
        {"a": (True, 10), "b": (1, 10)},
        {"a": (1.5, 10), "b": (1, 10)},
        {"a": (1, 10, 3), "b": (1, 10)},
        {"a": "1/10", "b": (1, 10)},
        {"a": (1, 10**10), "b": (1, 10)},
        {None: (1, 10), "b": (1, 10)},
        [("a", (1, 10)), ("b", (1, 10))],
    ],
)
def test_bad_counts_raise_stats_error(counts):
    with pytest.raises(StatsError):
        unpaired_binary("sex", "refusal", counts)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"attribute": 3},
        {"attribute": "sex\x00"},
        {"outcome": ""},
        {"alpha": 0},
        {"alpha": 1.5},
        {"alpha": "0.05"},
        {"power": 1.0},
        {"power": math.nan},
        {"favourable": "no"},
    ],
)
def test_bad_parameters_raise_stats_error(kwargs):
    arguments: dict[str, Any] = {"attribute": "sex", "outcome": "refusal", "favourable": True}
    arguments |= {"counts": {"a": (1, 10), "b": (2, 10)}, "alpha": 0.05, "power": 0.8} | kwargs
    with pytest.raises(StatsError):
        unpaired_binary(**arguments)


def test_fdr_and_finding_dict_refuse_what_is_not_a_finding():
    with pytest.raises(StatsError):
        fdr_adjust([{"p_value": 0.01}])  # type: ignore[list-item]
    with pytest.raises(StatsError):
        fdr_adjust("findings")  # type: ignore[arg-type]
    with pytest.raises(StatsError):
        finding_dict({"p_value": 0.01})  # type: ignore[arg-type]
    assert issubclass(StatsError, ValueError)
    assert isinstance(paired_binary("s", "o", pairs((True, False, 1))), Finding)


def test_no_library_warning_leaks_from_degenerate_input():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        paired_binary("sex", "refusal", pairs((True, True, 3)))
        paired_continuous("sex", "answer_length", [{"a": 0.0, "b": 0.0}] * 3)
        paired_continuous("sex", "answer_length", [{"a": 1e6, "b": 1.0}, {"a": 1e6, "b": 2.0}])
        unpaired_binary("sex", "refusal", {"a": (0, 10), "b": (0, 10), "c": (0, 3)})
