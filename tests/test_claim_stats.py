"""The statistics behind the verdicts: paired one-sample t intervals, the margin's own uncertainty,
TOST equivalence, the combination of a claim's effects (intersection-union, Holm), the minimum
detectable effect, and the store side (repeats aligned by index, floor pairs, the configuration line)."""

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from pudlab.experiments.stats import (
    ALPHA,
    EQUIVALENT,
    INCONCLUSIVE,
    NOT_EVALUATED,
    NOT_REPRODUCED,
    REPRODUCED,
    Margin,
    combine,
    judge_effect,
    minimum_detectable,
    paired,
    pooled_std,
    repeats_needed,
)


def test_paired_contrasts_are_taken_within_each_repeat():
    a = np.array([1.0, 2.0, np.nan, 4.0])
    b = np.array([0.5, 1.0, 3.0, 3.0, 9.0])
    assert paired([a, b], [1, -1]).tolist() == [0.5, 1.0, 1.0]  # repeat 2 is missing in a; b's extra repeat unused


def test_one_sample_t_interval_with_n_minus_1_df():
    d = np.array([0.31, 0.12, 0.45, 0.27, 0.2])
    effect = judge_effect("e", d, Margin.fixed(0.0))
    ci = scipy_stats.ttest_1samp(d, 0.0).confidence_interval(0.95)
    assert (effect.low, effect.high) == pytest.approx((ci.low, ci.high))
    assert effect.df == 4 and effect.n == 5 and effect.estimate == pytest.approx(d.mean())
    # with a fixed margin the decision is the one-sided t-test at ALPHA
    p = scipy_stats.ttest_1samp(d, 0.1, alternative="greater").pvalue
    assert judge_effect("e", d, Margin.fixed(0.1)).p_support == pytest.approx(p, rel=1e-6)


def test_pairing_removes_what_a_repeat_shares():
    """Two points that share most of their noise within a repeat: the paired interval is far narrower than
    one that treats them as independent groups would be."""
    rng = np.random.default_rng(0)
    shared = rng.normal(0, 1.0, 6)
    low, high = shared + rng.normal(0, 0.05, 6), shared + 0.5 + rng.normal(0, 0.05, 6)
    effect = judge_effect("rise", paired([high, low], [1, -1]), Margin.fixed(0.2))
    welch = scipy_stats.ttest_ind(high, low, equal_var=False).confidence_interval(0.95)
    assert effect.verdict == REPRODUCED and (effect.high - effect.low) < 0.2 * (welch.high - welch.low)


def test_too_few_repeats_or_no_variance_is_unbounded():
    assert judge_effect("e", np.array([0.4]), Margin.fixed(0.1)).verdict == INCONCLUSIVE
    tied = judge_effect("e", np.array([0.4, 0.4, 0.4]), Margin.fixed(0.1))
    assert tied.verdict == INCONCLUSIVE and tied.low == -math.inf and tied.high == math.inf
    assert judge_effect("e", np.zeros(0), Margin.fixed(0.1)).verdict == NOT_EVALUATED
    rounded = judge_effect("e", np.array([0.012] * 3), Margin.fixed(0.01), rounding=2 ** 2 * 0.002 ** 2 / 12)
    assert 0 < rounded.high - rounded.low and rounded.verdict == INCONCLUSIVE


def test_the_margins_uncertainty_enters_the_decision():
    d = np.array([0.52, 0.61, 0.55, 0.58, 0.50, 0.57, 0.54, 0.6, 0.53, 0.56])
    exact = judge_effect("e", d, Margin.fixed(0.4))
    few = judge_effect("e", d, Margin.from_floor(0.2, 2, 2.0))  # margin 0.4 from 3 floor pairs
    many = judge_effect("e", d, Margin.from_floor(0.2, 40, 2.0))
    assert exact.verdict == REPRODUCED and many.verdict == REPRODUCED and few.verdict == INCONCLUSIVE
    assert exact.p_support < many.p_support < few.p_support
    low, high = Margin.from_floor(0.2, 9, 2.0).interval()
    assert low < 0.4 < high
    assert high / 0.4 == pytest.approx(math.sqrt(9 / scipy_stats.chi2.ppf(0.025, 9)))


def test_calibration_at_the_margin_on_a_few_thousand_draws():
    """An effect exactly at an estimated margin: 'reproduced' at most ALPHA of the time (and not far below)."""
    rng = np.random.default_rng(1)
    hits, draws = 0, 3000
    for _ in range(draws):
        floor = rng.normal(0, 1.0, 10)
        margin = Margin.from_floor(float(floor.std(ddof=1)), 9, 2.0, nodes=400)
        hits += judge_effect("e", rng.normal(2.0, 1.0, 10), margin).verdict == REPRODUCED
    assert hits / draws <= ALPHA + 0.006


def test_tost_equivalence():
    margin = Margin.fixed(0.5)
    inside = judge_effect("e", np.array([0.0, 0.05, -0.05, 0.02, -0.01]), margin, kind=EQUIVALENT)
    outside = judge_effect("e", np.array([5.0, 5.1, 4.9, 5.05]), margin, kind=EQUIVALENT)
    below = judge_effect("e", np.array([-5.0, -5.1, -4.9, -5.05]), margin, kind=EQUIVALENT)
    straddles = judge_effect("e", np.array([0.3, 0.7, 0.5, 0.6]), margin, kind=EQUIVALENT)
    assert (inside.verdict, outside.verdict, below.verdict, straddles.verdict) == (
        REPRODUCED, NOT_REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE)
    t90 = scipy_stats.t.ppf(0.95, 4) * inside.se
    assert -0.5 < inside.estimate - t90 and inside.estimate + t90 < 0.5  # the 90 % interval inside +-m


def test_combine_is_intersection_union_for_reproduced_and_holm_for_not():
    def effect(p_support, p_against, verdict):
        base = judge_effect("e", np.array([1.0, 1.1, 0.9]), Margin.fixed(0.0))
        return type(base)(**{**base.__dict__, "p_support": p_support, "p_against": p_against, "verdict": verdict})

    yes, unsure = effect(0.001, 0.999, REPRODUCED), effect(0.3, 0.7, INCONCLUSIVE)
    against = effect(0.999, 0.02, NOT_REPRODUCED)  # below ALPHA alone, not after Holm over 2
    assert combine([yes, yes]) == REPRODUCED
    assert combine([yes, unsure]) == INCONCLUSIVE
    assert combine([yes, against]) == INCONCLUSIVE
    assert combine([against]) == NOT_REPRODUCED
    assert combine([yes, effect(0.999, 0.001, NOT_REPRODUCED)]) == NOT_REPRODUCED
    secondary = type(yes)(**{**against.__dict__, "role": "secondary", "p_against": 1e-9})
    assert combine([yes, secondary]) == REPRODUCED  # secondary effects do not decide


def test_minimum_detectable_effect_and_repeats_needed():
    margin = Margin.from_floor(0.1, 18, 2.0)
    small, large = minimum_detectable(0.05, 4, margin), minimum_detectable(0.2, 4, margin)
    assert margin.value < small < large
    assert minimum_detectable(math.nan, 4, margin) == math.inf
    n = repeats_needed(0.14, margin, 2 * margin.value)
    assert n is not None and minimum_detectable(0.14 / math.sqrt(n), n - 1, margin) <= 0.4
    assert minimum_detectable(0.14 / math.sqrt(n - 1), n - 2, margin) > 0.4
    assert repeats_needed(10.0, margin, 2 * margin.value) is None


def test_pooled_std():
    std, df = pooled_std([[1.0, 2.0, 3.0], [10.0, 12.0], [5.0]])
    assert df == 3 and std == pytest.approx(math.sqrt((2 + 2) / 3))
    assert math.isnan(pooled_std([[1.0]])[0])
