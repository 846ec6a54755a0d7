"""Claim tests on synthetic series with known effects and known nulls: each evaluator reproduces a
planted effect, fails on contradicting data, and stays unconvinced under the negative controls."""

import json
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from pudlab.experiments.claims import (
    INCONCLUSIVE,
    NOT_EVALUATED,
    NOT_REPRODUCED,
    REPRODUCED,
    ClaimResult,
    evaluate_claims,
    spearman,
)
from pudlab.experiments.controls import null_control, permuted_control, planted_tables
from pudlab.experiments.stats import all_of, contrast, decide, equivalence, share_of

NULL_CLAIMS = (1, 4, 5, 6, 7)
SIGMAS = [0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0]


def verdicts(tables, mnist_family=True):
    return {r.number: r.verdict for r in evaluate_claims(tables, mnist_family=mnist_family)}


def curve(kind, fn, *, noise, seed, xs=None, repeats=5):
    rng = np.random.default_rng(seed)
    xs = xs or SIGMAS
    values = [[float(fn(x) + rng.normal(0, noise)) for _ in range(repeats)] for x in xs]
    return {"kind": kind, "x": list(xs), "mean": [float(np.mean(v)) for v in values],
            "std": [float(np.std(v, ddof=1)) for v in values], "n": [repeats] * len(xs), "values": values}


# ------------------------------------------------------------------------------------------ positive control
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_positive_control_planted_effects_are_reproduced(seed):
    results = evaluate_claims(planted_tables(seed, effect=1.0, repeats=5), mnist_family=True)
    assert [r.verdict for r in results] == [REPRODUCED] * 9, [(r.number, r.summary) for r in results
                                                              if r.verdict != REPRODUCED]


def test_sigma_star_is_where_the_planted_gap_vanishes():
    """The planted Exp-3 gap falls linearly to 0 at sigma 0.4: still measurable at 0.3, gone from 0.5 on."""
    result = {r.number: r for r in evaluate_claims(planted_tables(0, effect=1.0, repeats=5), mnist_family=True)}[5]
    pairs = result.evidence["pairs"]
    assert {pair["sigma*"] for pair in pairs.values()} == {0.5}
    assert "sigma* 0.5" in result.summary and "0.4" in result.summary


# ------------------------------------------------------------------------------------------ negative controls
@pytest.mark.parametrize("seed", range(6))
def test_no_planted_effect_reproduces_none_of_claims_1_and_4_to_7(seed):
    found = verdicts(planted_tables(seed, effect=0.0))
    assert all(found[n] in (NOT_REPRODUCED, INCONCLUSIVE) for n in NULL_CLAIMS), found


@pytest.mark.parametrize("seed", range(6))
def test_null_control_sigma_zero_everywhere_reproduces_none_of_claims_1_and_4_to_7(seed):
    tables = planted_tables(seed, effect=1.0, repeats=5)
    assert all(v == REPRODUCED for v in verdicts(tables).values())
    found = verdicts(null_control(tables))
    assert all(found[n] in (NOT_REPRODUCED, INCONCLUSIVE) for n in NULL_CLAIMS), found
    # sigma no longer matters: every grid point holds the sigma = 0 repeats
    entry = null_control(tables)["exp3"]["D_3,1"]
    assert all(sorted(v) == sorted(entry["values"][0]) for v in entry["values"])


def test_permuted_control_keeps_each_repeat_and_breaks_the_trend():
    tables = planted_tables(3, effect=1.0, repeats=5)
    permuted = permuted_control(tables, seed=7)
    before, after = tables["exp4"]["D_4,1"]["values"], permuted["exp4"]["D_4,1"]["values"]
    for r in range(5):
        assert sorted(v[r] for v in before) == sorted(v[r] for v in after)
    assert after != before
    assert permuted_control(tables, seed=7) == permuted  # seeded
    assert verdicts(permuted)[4] != REPRODUCED


# ------------------------------------------------------------------------------------------ each claim can fail
def _set(tables, experiment, name, fn, kind="distance", noise=0.05, seed=11):
    tables[experiment][name] = curve(kind, fn, noise=noise, seed=seed)


BREAKERS = {
    1: lambda t: [_set(t, e, k, lambda x: 0.7 + 0.2 * x, "accuracy", 0.005, i)
                  for i, (e, k) in enumerate((e, k) for e in ("exp1", "exp2") for k in list(t[e]))],
    2: lambda t: _set(t, "exp1", "A(W_1,3)", lambda x: 0.99, "accuracy", 0.005),
    3: lambda t: _set(t, "exp2", "A(W_2,3)", lambda x: 0.9, "accuracy", 0.005),
    4: lambda t: [_set(t, e, k, lambda x: 2.7, seed=i) for i, (e, k) in enumerate(
        (("exp3", "D_3,1"), ("exp3", "D_3,3"), ("exp4", "D_4,1"), ("exp5", "D_5,1")))],
    5: lambda t: [_set(t, "exp3", "D_3,2", lambda x: 3.7 + 1.5 * x), _set(t, "exp3", "D_3,1", lambda x: 2.7 + 1.5 * x, seed=3)],
    6: lambda t: _set(t, "exp4", "D_4,3", lambda x: 2.7 + 1.0 * x),
    7: lambda t: _set(t, "exp5", "D_5,3", lambda x: 4.0 + 2.5 * x),
    8: lambda t: _set(t, "exp1", "A(W_1,1)", lambda x: 0.6, "accuracy", 0.005),
    9: lambda t: t["fig2"].update({"D_1": curve("epoch_distance", lambda e: 0.3 * e, noise=0.01, seed=1,
                                                xs=list(range(1, 13)))}),
}


@pytest.mark.parametrize("number", sorted(BREAKERS))
def test_each_claim_fails_on_contradicting_data(number):
    tables = planted_tables(0, effect=1.0, repeats=5)
    BREAKERS[number](tables)
    result = {r.number: r for r in evaluate_claims(tables, mnist_family=True)}[number]
    assert result.verdict == NOT_REPRODUCED, result.summary
    assert result.summary and result.evidence


def test_one_repeat_is_inconclusive_not_reproduced():
    """With a single repeat there is no interval: a planted effect is not claimed, nor ruled out."""
    found = verdicts(planted_tables(0, effect=1.0, repeats=1))
    assert all(found[n] == INCONCLUSIVE for n in range(1, 10)), found


def test_missing_series_and_non_mnist():
    tables = planted_tables(0, effect=1.0, repeats=5)
    del tables["exp5"]
    results = {r.number: r for r in evaluate_claims(tables, mnist_family=False)}
    assert results[7].verdict == NOT_EVALUATED and "exp5" in results[7].evidence["missing"]
    assert results[8].verdict == NOT_EVALUATED
    assert results[1].verdict == REPRODUCED


def test_result_fields_are_json_ready_and_round_trip():
    for result in evaluate_claims(planted_tables(1, effect=1.0, repeats=5), mnist_family=True):
        data = json.loads(json.dumps(result.to_dict()))
        again = ClaimResult.from_dict(data)
        assert again.verdict == result.verdict and again.summary == result.summary
        assert isinstance(result.summary, str) and "\n" not in result.summary and "[" in result.summary
        assert isinstance(result.evidence, dict) and result.evidence


# ------------------------------------------------------------------------------------------ the statistics
def test_two_group_contrast_is_welchs_interval():
    a, b = [3.1, 3.4, 2.9, 3.3], [2.0, 2.6, 2.2]
    estimate, low, high, df, n = contrast([a, b], [1, -1])
    result = scipy_stats.ttest_ind(a, b, equal_var=False)
    ci = result.confidence_interval(0.95)
    assert estimate == pytest.approx(np.mean(a) - np.mean(b))
    assert (low, high) == pytest.approx((ci.low, ci.high))
    assert df == pytest.approx(result.df)
    assert n == (4, 3)


def test_contrast_with_single_values_is_unbounded():
    estimate, low, high, _, _ = contrast([[1.0], [0.5, 0.6]], [1, -1])
    assert estimate == pytest.approx(0.45) and low == -math.inf and high == math.inf
    assert decide(low, high, 0.1) == INCONCLUSIVE


def test_decisions():
    assert decide(0.3, 0.5, 0.2) == REPRODUCED
    assert decide(-0.1, 0.15, 0.2) == NOT_REPRODUCED
    assert decide(0.1, 0.5, 0.2) == INCONCLUSIVE
    assert equivalence("e", [[0.0, 0.01, -0.01], [0.0, 0.0, 0.01]], [1, -1], 0.5).verdict == REPRODUCED
    assert equivalence("e", [[5.0, 5.1, 4.9], [0.0, 0.0, 0.1]], [1, -1], 0.5).verdict == NOT_REPRODUCED
    assert all_of([REPRODUCED, INCONCLUSIVE]) == INCONCLUSIVE
    assert all_of([REPRODUCED, NOT_REPRODUCED]) == NOT_REPRODUCED
    assert share_of([REPRODUCED, REPRODUCED, INCONCLUSIVE], 2 / 3) == REPRODUCED
    assert share_of([REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE], 2 / 3) == INCONCLUSIVE
    assert share_of([REPRODUCED, NOT_REPRODUCED, NOT_REPRODUCED], 2 / 3) == NOT_REPRODUCED


def test_spearman():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 2, 3], [1, 1, 1]))
