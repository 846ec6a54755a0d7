"""Claims evaluation on synthetic series where the answer is known (both outcomes)."""

import pytest

from pudlab.experiments.claims import (
    NOT_EVALUATED,
    NOT_REPRODUCED,
    REPRODUCED,
    evaluate_claims,
    spearman,
)

SIGMAS = [0.0, 0.2, 0.4, 0.6, 1.0]


def curve(values, kind="accuracy", xs=None):
    xs = xs or SIGMAS
    return {"kind": kind, "x": list(xs), "mean": list(values), "std": [0.0] * len(values), "n": [1] * len(values)}


def paper_like():
    """Series shaped the way the paper says they are."""
    epochs = list(range(1, 11))
    settle = [1 - 0.5 ** e for e in epochs]
    return {
        "exp1": {"A(W_1,1)": curve([0.97, 0.95, 0.9, 0.85, 0.7]), "A(W_1,2)": curve([0.8, 0.78, 0.74, 0.7, 0.6]),
                 "A(W_1,3)": curve([0.5, 0.49, 0.47, 0.45, 0.4])},
        "exp2": {"A(W_2,1)": curve([0.97, 0.96, 0.93, 0.9, 0.85]), "A(W_2,2)": curve([0.95, 0.93, 0.88, 0.84, 0.75]),
                 "A(W_2,3)": curve([0.9, 0.85, 0.75, 0.65, 0.5])},
        "exp3": {"D_3,1": curve([0, 3.0, 3.6, 3.9, 4.2], "distance"), "D_3,2": curve([4.0, 4.1, 4.0, 4.0, 4.25], "distance"),
                 "D_3,3": curve([0, 2.9, 3.4, 3.7, 4.0], "distance"), "D_3,4": curve([3.8, 3.9, 3.7, 3.8, 4.05], "distance"),
                 "floor[Wr31]": curve([2.7], "floor", [0.0])},
        "exp4": {"D_4,1": curve([0, 2.8, 3.1, 3.3, 3.6], "distance"), "D_4,2": curve([4.0, 4.0, 3.8, 3.7, 3.8], "distance"),
                 "D_4,3": curve([4.6, 4.5, 4.2, 4.0, 4.0], "distance"), "floor[Wr41]": curve([2.7], "floor", [0.0])},
        "exp5": {"D_5,1": curve([0, 3.0, 3.5, 3.8, 4.2], "distance"), "D_5,2": curve([3.2, 3.3, 3.4, 3.6, 3.9], "distance"),
                 "D_5,3": curve([2.0, 2.2, 2.4, 2.6, 2.8], "distance"), "floor[Wr51]": curve([2.7], "floor", [0.0])},
        "fig2": {**{f"D_{k}": curve([k * s for s in settle], "epoch_distance", epochs) for k in (1, 2, 3, 4)},
                 **{f"A(W_{k})": curve([0.9 * s for s in settle], "epoch_accuracy", epochs) for k in (1, 2, 3, 4)}},
    }


def test_all_claims_reproduced_on_paper_like_series():
    results = evaluate_claims(paper_like(), mnist_family=True)
    assert [r.status for r in results] == [REPRODUCED] * 9, [(r.number, r.evidence) for r in results if r.status != REPRODUCED]


@pytest.mark.parametrize(
    "number,breaker",
    [
        (1, lambda t: t["exp1"].update({k: curve([0.5, 0.6, 0.7, 0.8, 0.9]) for k in t["exp1"]})),
        (2, lambda t: t["exp1"].update({"A(W_1,3)": curve([0.99] * 5)})),
        (3, lambda t: t["exp2"].update({"A(W_2,3)": curve([0.99] * 5)})),
        (4, lambda t: [t[e].update({k: curve([0, 3, 3, 3, 3], "distance") for k in t[e] if k.startswith("D")})
                       for e in ("exp3", "exp4", "exp5")]),
        (5, lambda t: t["exp3"].update({"D_3,2": curve([4.0, 6.0, 7.0, 8.0, 9.0], "distance")})),
        (6, lambda t: t["exp4"].update({"D_4,3": curve([4.6, 3.0, 3.1, 3.3, 3.6], "distance")})),
        (7, lambda t: t["exp5"].update({"D_5,3": curve([5.0] * 5, "distance")})),
        (8, lambda t: t["exp1"].update({"A(W_1,1)": curve([0.97, 0.7, 0.6, 0.5, 0.4])})),
        (9, lambda t: t["fig2"].update({"D_1": curve(list(range(10)), "epoch_distance", list(range(1, 11)))})),
    ],
)
def test_each_claim_can_fail(number, breaker):
    tables = paper_like()
    breaker(tables)
    results = {r.number: r for r in evaluate_claims(tables, mnist_family=True)}
    assert results[number].status == NOT_REPRODUCED
    assert results[number].evidence


def test_missing_series_and_non_mnist():
    tables = paper_like()
    del tables["exp5"]
    results = {r.number: r for r in evaluate_claims(tables, mnist_family=False)}
    assert results[7].status == NOT_EVALUATED and "exp5" in results[7].evidence["missing"]
    assert results[8].status == NOT_EVALUATED
    assert results[1].status == REPRODUCED


def test_spearman():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3], [1, 1, 1]) != spearman([1, 2, 3], [1, 1, 1])  # nan


def test_claim9_needs_a_flat_tail_not_just_a_slow_last_step():
    """A concave curve still rising over its last quarter (the quick preset's 8 epochs) has not converged."""
    tables = paper_like()
    rising = [1.1, 1.85, 2.2, 2.55, 2.8, 3.05, 3.2, 3.38]  # D_1 of a real 8-epoch run
    tables["fig2"]["D_1"] = curve(rising, "epoch_distance", list(range(1, 9)))
    results = {r.number: r for r in evaluate_claims(tables, mnist_family=True)}
    assert results[9].status == NOT_REPRODUCED
    assert results[9].evidence["D_1"]["tail spread"] == pytest.approx(3.38 - 3.05)
