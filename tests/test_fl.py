"""Federated learning: aggregation rules, specs, adversaries, PoL challenges, resumable simulation, CLI."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from pudlab.config import shipped_names
from pudlab.errors import SpecError, StoreError
from pudlab.fl import adversaries as adv
from pudlab.fl.aggregation import (
    KrumParameterError,
    aggregate,
    check_krum_parameters,
    fedavg,
    krum,
    krum_scores,
    multi_krum,
    pairwise_squared_distances,
)
from pudlab.fl.partition import partition_clients
from pudlab.fl.records import RoundRecord
from pudlab.fl.rounds import effective_krum
from pudlab.fl.simulation import Simulation, run_simulation
from pudlab.fl.spec_reader import load_spec, parse_override, spec_from_dict
from pudlab.fl.summary import detection_auc, detection_summary
from pudlab.report.fl_document import write_fl_report
from pudlab.train.trainer import torch_threads

from .conftest import make_source


# ------------------------------------------------------------------------------------ helpers
def tiny_spec(**sections) -> dict:
    """A 6-client simulation on 12x12 synthetic bars (widths 4, 8, 8): about a second per round."""
    data = {
        "simulation": {"dataset": "synthetic", "clients": 6, "rounds": 2, "seed": 3, "defence": "none"},
        "sampling": {"mode": "iid", "setting": "S-1-1-0.15"},
        "model": {"widths": [4, 8, 8], "hidden": 16},
        "training": {"local_epochs": 1, "batch_size": 16, "lr": 3e-3},
        "aggregation": {"f": 1},
        "pol": {"sigma": 0.0, "checkpoint_every": 2, "utility_epochs": 0},
    }
    for name, values in sections.items():
        if name == "adversaries":
            data["adversaries"] = values
        else:
            data.setdefault(name, {}).update(values)
    return data


def build(data: dict, store: Path, **kwargs) -> Simulation:
    return Simulation(spec_from_dict(data, "tiny.toml"), store, source=make_source(), **kwargs)


def bits(weights: dict[str, torch.Tensor]) -> dict[str, bytes]:
    return {name: tensor.numpy().tobytes() for name, tensor in weights.items()}


def without_timings(value):
    if isinstance(value, RoundRecord):
        return without_timings(value.to_dict())
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k != "seconds"}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


# ------------------------------------------------------------------------------------ Multi-Krum
def test_multi_krum_hand_computed_scores_and_selection():
    # Prepare: five scalar updates, n = 5, f = 1, so each score sums the n - f - 2 = 2 nearest.
    updates = [np.array([value]) for value in (0.0, 1.0, 3.0, 7.0, 20.0)]
    # squared distances: 0-1 1, 0-2 9, 1-2 4, 2-3 16, 1-3 36, 3-4 169, 2-4 289, ...
    expected_scores = [1 + 9, 1 + 4, 4 + 9, 16 + 36, 169 + 289]

    # Execute
    result = multi_krum(updates, f=1, m=2)
    single = krum(updates, f=1)

    # Assert
    assert result.scores.tolist() == expected_scores
    assert result.selected == (0, 1)
    assert result.ranking == (1, 0, 2, 3, 4)
    assert result.aggregate.tolist() == [0.5]
    assert single.selected == (1,) and single.aggregate.tolist() == [1.0]
    assert result.distances[2, 4] == 289.0 and result.distances[4, 2] == 289.0


def test_multi_krum_ties_broken_by_index_and_default_m():
    # Prepare: the four corners of the unit square tie (score 1 + 1), one far outlier.
    updates = [np.array(p, dtype=np.float64) for p in ([0, 0], [1, 0], [0, 1], [1, 1], [10, 10])]

    # Execute
    result = multi_krum(updates, f=1, m=3)
    default_m = multi_krum(updates, f=1)

    # Assert
    assert result.scores.tolist() == [2.0, 2.0, 2.0, 2.0, 162.0 + 181.0]
    assert result.selected == (0, 1, 2)
    assert np.allclose(result.aggregate, [1 / 3, 1 / 3])
    assert default_m.selected == (0, 1, 2, 3)  # m = n - f
    assert krum(updates, f=1).selected == (0,)


def test_multi_krum_identical_updates_are_exact():
    # Prepare: five copies of one float32 weight dict.
    rng = np.random.default_rng(0)
    weights = {"w": torch.from_numpy(rng.standard_normal((3, 4)).astype(np.float32)), "b": torch.ones(4)}
    updates = [{k: v.clone() for k, v in weights.items()} for _ in range(5)]

    # Execute
    result = multi_krum(updates, f=1, m=3)

    # Assert: distances and scores exactly 0, the lowest indices win, the mean is the update bit for bit
    assert not result.distances.any() and not result.scores.any()
    assert result.selected == (0, 1, 2)
    assert bits(result.aggregate) == bits(weights)
    assert result.aggregate["w"].dtype == torch.float32


def _gram_squared_distances_float32(vectors: list[np.ndarray]) -> np.ndarray:
    """The Gram-identity shortcut some libraries use: |x|^2 + |y|^2 - 2 x.y, in float32."""
    stack = np.stack(vectors).astype(np.float32)
    norms = (stack * stack).sum(axis=1, dtype=np.float32)
    gram = stack @ stack.T
    return norms[:, None] + norms[None, :] - np.float32(2) * gram


def test_multi_krum_near_identical_updates_exact_where_gram_identity_fails():
    # Prepare: large float32 weights (about 300 per entry) that differ by about 1e-4: the
    # small-sigma case. Client 4 is the outlier, 10x further away than the others.
    rng = np.random.default_rng(1)
    size = 1024
    base = (300.0 + rng.standard_normal(size)).astype(np.float32)
    steps = [1e-4, 1e-4, 1e-4, 1e-4, 1e-3]
    updates = [(base + np.float32(step) * rng.standard_normal(size).astype(np.float32)).astype(np.float32)
               for step in steps]
    exact = np.zeros((5, 5))
    for i in range(5):
        for j in range(i + 1, 5):
            diffs = [Fraction(float(a)) - Fraction(float(b)) for a, b in zip(updates[i], updates[j], strict=True)]
            exact[i, j] = exact[j, i] = float(sum(d * d for d in diffs))

    # Execute
    ours = pairwise_squared_distances(updates)
    gram = _gram_squared_distances_float32(updates).astype(np.float64)
    result = multi_krum(updates, f=1)

    # Assert: ours is exact to float64 rounding and keeps the four close updates. The Gram identity
    # is off by more than the distances themselves: it puts the outlier at distance <= 0 from the
    # others, so Krum on it would pick the outlier first.
    assert np.allclose(ours, exact, rtol=1e-12, atol=0)
    assert result.selected == (0, 1, 2, 3)
    assert krum(updates, f=1).selected != (4,)
    off_diagonal = ~np.eye(5, dtype=bool)
    assert np.max(np.abs(gram - exact)[off_diagonal]) > 10 * np.max(exact)
    assert (gram[4, :4] <= 0).all()
    assert int(np.argmin(krum_scores(gram, 1))) == 4


def test_fedavg_weighting_by_sample_count():
    # Prepare
    updates = [{"w": torch.tensor([0.0, 2.0])}, {"w": torch.tensor([3.0, 8.0])}, {"w": torch.tensor([9.0, 9.0])}]

    # Execute
    weighted = fedavg(updates, [1, 2, 0])
    equal = fedavg(updates)
    arrays = fedavg([np.array([1.0], dtype=np.float32), np.array([4.0], dtype=np.float32)], [3, 1])

    # Assert: (1*[0,2] + 2*[3,8]) / 3 = [2, 6]; a zero count drops the update
    assert weighted.aggregate["w"].tolist() == [2.0, 6.0]
    assert weighted.selected == (0, 1)
    assert equal.aggregate["w"].tolist() == pytest.approx([4.0, 19 / 3])
    assert arrays.aggregate.dtype == np.float32 and arrays.aggregate.tolist() == [1.75]
    with pytest.raises(ValueError, match="sample counts"):
        fedavg(updates, [1, 2])
    with pytest.raises(ValueError, match="every sample count is 0"):
        fedavg(updates, [0, 0, 0])


@pytest.mark.parametrize(("n", "f", "m", "match"), [
    (4, 1, None, r"n > 2f \+ 2"),
    (8, 3, None, r"n > 2f \+ 2"),
    (5, -1, None, "f >= 0"),
    (5, 1, 0, "1 <= m <= n"),
    (5, 1, 6, "1 <= m <= n"),
])
def test_invalid_krum_parameters(n, f, m, match):
    updates = [np.array([float(i)]) for i in range(n)]
    with pytest.raises(KrumParameterError, match=match) as caught:
        multi_krum(updates, f=f, m=m)
    assert isinstance(caught.value, SpecError) and isinstance(caught.value, ValueError)
    with pytest.raises(ValueError):
        check_krum_parameters(n, f, m)


def test_aggregate_registry_and_layout_checks():
    updates = [np.array([0.0]), np.array([1.0]), np.array([2.0]), np.array([30.0]), np.array([3.0])]
    assert aggregate("multikrum", updates, f=1, m=3).selected == (0, 1, 2)
    assert aggregate("fedavg", updates).aggregate.tolist() == [7.2]
    with pytest.raises(ValueError, match="known: bulyan, fedavg, krum, median, multikrum, trimmed_mean"):
        aggregate("geomedian", updates)
    with pytest.raises(ValueError, match="names/shapes/order"):
        fedavg([{"a": torch.zeros(2)}, {"b": torch.zeros(2)}])


def test_effective_krum_shrinks_f_after_pol_rejections():
    spec = spec_from_dict(tiny_spec(simulation={"clients": 10}, aggregation={"f": 3}), "t.toml")
    assert effective_krum(10, spec) == (3, 7)
    assert effective_krum(6, spec) == (1, 5)
    assert effective_krum(3, spec) == (0, 3)
    assert effective_krum(2, spec) is None


# ------------------------------------------------------------------------------------ adversaries
def test_adversary_updates_hand_computed():
    global_weights = {"w": torch.tensor([1.0, 1.0])}
    local = {"w": torch.tensor([2.0, 0.0])}  # update (1, -1)
    assert adv.sign_flip_update(global_weights, local, scale=2.0)["w"].tolist() == [-1.0, 3.0]
    assert adv.scaled_update(global_weights, local, scale=3.0)["w"].tolist() == [4.0, -2.0]
    noisy = adv.gaussian_update(global_weights, local, std=0.5, rng=np.random.default_rng(0))["w"]
    assert noisy.shape == (2,) and not torch.equal(noisy, local["w"])
    assert adv.copied_model(local, noise_std=0.0, rng=np.random.default_rng(0))["w"].tolist() == [2.0, 0.0]
    assert adv.lazy_steps(10, 0.25) == 3 and adv.lazy_steps(3, 0.01) == 1
    assert [adv.stretched_step(t, real_steps=3, claimed_steps=12) for t in (0, 4, 8, 12)] == [0, 1, 2, 3]


# ------------------------------------------------------------------------------------ spec
def test_shipped_spec_loads_and_overrides():
    assert "mnist5k_noniid" in shipped_names("fl")
    spec = load_spec("mnist5k_noniid", ["training.lr=0.003", ("simulation", "rounds", 2)])
    assert spec.simulation.clients == 10 and spec.sampling.mode == "noniid"
    assert spec.training.lr == 0.003 and spec.simulation.rounds == 2
    assert sum(len(a.clients) for a in spec.adversaries if a.family == "byzantine") == 3
    assert [a.clients for a in spec.adversaries if a.kind == "thief"] == [(9,)]
    assert parse_override("pol.client_sigma=[0.1, 0.2]") == ("pol", "client_sigma", [0.1, 0.2])
    assert parse_override("simulation.dataset=mnist") == ("simulation", "dataset", "mnist")


@pytest.mark.parametrize(("change", "match"), [
    ({"training": {"lr": "fast"}}, r"tiny.toml: training\.lr = 'fast'; expected a number > 0"),
    ({"training": {"epochs": 3}}, r"\[training\] has unknown key\(s\) \['epochs'\]"),
    ({"simulation": {"clients": 0}}, r"simulation\.clients = 0; expected an integer >= 1"),
    ({"simulation": {"defence": "median"}}, r"simulation\.defence = 'median'; expected one of none"),
    ({"sampling": {"setting": "S-0.5-1-0.1"}}, r"sampling\.setting = .* expected S-1-1-Z in iid mode"),
    ({"sampling": {"mode": "noniid", "labels": [[0, 1]]}}, r"sampling\.labels = .* one label list per client"),
    ({"sampling": {"setting": "S-2-1-0.1"}},
     r"sampling\.setting = 'S-2-1-0\.1'; expected an S-X-Y-Z setting \(label degree X must be in \(0, 1\]"),
    ({"simulation": {"defence": "multikrum"}, "aggregation": {"f": 2}},
     r"aggregation\.f = 2, m = None; expected values that fit simulation\.clients = 6: Krum needs n > 2f \+ 2"),
    ({"pol": {"client_sigma": [0.1]}}, r"pol\.client_sigma = .* one sigma per client \(6 numbers\)"),
    ({"pol": {"threshold": "loose"}}, r"pol\.threshold = 'loose'; expected \"auto\" or a number"),
    ({"adversaries": [{"kind": "sleeper", "clients": [1]}]}, r"adversaries\[0\]\.kind = 'sleeper'; expected one of"),
    ({"adversaries": [{"kind": "lazy"}]}, r"adversaries\[0\]\.clients is missing; expected a non-empty list"),
    ({"adversaries": [{"kind": "scaled", "clients": [7]}]}, r"adversaries\[0\]\.clients = .* indices in 0..5"),
    ({"adversaries": [{"kind": "scaled", "clients": [1], "victim": 2}]},
     r"\[adversaries\[0\]\] has unknown key\(s\) \['victim'\]"),
    ({"adversaries": [{"kind": "scaled", "clients": [1]}, {"kind": "lazy", "clients": [1]}]},
     r"adversaries\[1\]\.clients = \[1\]; expected each client in at most one entry \(client 1 is already in "
     r"adversaries\[0\]\)"),
    ({"adversaries": [{"kind": "thief", "clients": [1], "victim": 1}]}, r"victim = 1; expected another client's index"),
    ({"adversaries": [{"kind": "thief", "clients": [1]}, {"kind": "thief", "clients": [2], "victim": 1}]},
     r"adversaries\[1\]\.victim = 1; expected a client that trains"),
    ({"adversaries": [{"kind": "lazy", "clients": [0, 1, 2, 3, 4, 5]}]}, r"expected at least one honest client"),
    ({"extra": {}}, r"unknown table\(s\) \['extra'\]"),
])
def test_spec_validation_errors_name_file_key_and_expectation(change, match):
    with pytest.raises(SpecError, match=match):
        spec_from_dict(tiny_spec(**change), "tiny.toml")


def test_spec_file_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[simulation\nclients = 3\n")
    with pytest.raises(SpecError, match="bad.toml: not valid TOML"):
        load_spec(bad)
    with pytest.raises(SpecError, match="no such simulation spec file; shipped fl: mnist5k_noniid"):
        load_spec("no-such-spec")
    with pytest.raises(SpecError, match="expected section.key=value"):
        load_spec("mnist5k_noniid", ["lr=3"])


def test_noniid_partition_is_disjoint_with_chained_windows():
    data = tiny_spec(simulation={"clients": 5}, sampling={"mode": "noniid", "setting": "S-0.3-0.6-0.3"})
    source = make_source()
    clients = partition_clients(spec_from_dict(data, "t.toml"), source.train, 10)
    assert [c.labels for c in clients] == [(0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (4, 5, 6)]
    ids = np.concatenate([c.data.ids for c in clients])
    assert len(np.unique(ids)) == len(ids)
    for client in clients:
        assert set(np.unique(client.data.labels)) == set(client.labels)


# ------------------------------------------------------------------------------------ simulation
def test_tiny_simulation_is_deterministic(tmp_path):
    data = tiny_spec(adversaries=[{"kind": "gaussian", "clients": [2], "std": 0.05}])
    first = build(data, tmp_path / "a").run("none")
    second = build(data, tmp_path / "b").run("none")
    assert without_timings(first) == without_timings(second)
    for round_index in range(3):
        a = build(data, tmp_path / "a").load_global("none", round_index)
        b = build(data, tmp_path / "b").load_global("none", round_index)
        assert bits(a) == bits(b)
    assert len(first) == 3 and first[0].round == 0


def test_proof_logging_does_not_change_training(tmp_path):
    # an honest client that logs a PoL bundle ends with the same bits as one that does not
    data = tiny_spec(simulation={"rounds": 1})
    simulation = build(data, tmp_path)
    with torch_threads(1):
        plain = simulation.pool.submissions(1, simulation.initial_weights)
        logged = simulation.pool.submissions(1, simulation.initial_weights, proof_dir=tmp_path / "proofs")
    for a, b in zip(plain, logged, strict=True):
        assert bits(a.weights) == bits(b.weights)
        assert b.bundle is not None and (b.bundle / "manifest.json").exists()


def test_resume_after_interruption_equals_uninterrupted(tmp_path):
    # Prepare: PoL + Multi-Krum, 3 rounds; the interrupted run dies inside round 2's challenges.
    data = tiny_spec(simulation={"rounds": 3, "defence": "both"},
                     adversaries=[{"kind": "scaled", "clients": [4], "scale": 4.0}])
    from pudlab.fl.challenge import pol_challenge

    calls = {"count": 0}

    def dies_in_round_two(request):
        if request.round == 2:
            calls["count"] += 1
            if calls["count"] == 3:
                raise KeyboardInterrupt("killed")
        return pol_challenge(request)

    # Execute
    reference = build(data, tmp_path / "ref").run("both")
    interrupted = build(data, tmp_path / "cut", challenger=dies_in_round_two)
    with pytest.raises(KeyboardInterrupt):
        interrupted.run("both")
    assert interrupted.completed_rounds("both") == 1
    resumed_partly = build(data, tmp_path / "cut").run("both", max_new_rounds=1)
    assert resumed_partly[-1].round == 2
    resumed = build(data, tmp_path / "cut").run("both")

    # Assert
    assert without_timings(resumed) == without_timings(reference)
    simulation = build(data, tmp_path / "cut")
    assert bits(simulation.load_global("both", 3)) == bits(build(data, tmp_path / "ref").load_global("both", 3))


def test_resume_with_another_spec_is_refused(tmp_path):
    data = tiny_spec(simulation={"rounds": 1})
    build(data, tmp_path).run("none")
    more_rounds = tiny_spec(simulation={"rounds": 2})
    assert build(more_rounds, tmp_path).run("none")[-1].round == 2  # rounds may grow
    other = tiny_spec(simulation={"rounds": 2}, training={"lr": 1e-2})
    with pytest.raises(StoreError, match="made by another spec"):
        build(other, tmp_path).run("none")


EVERY_CHEATER = [
    {"kind": "random_weights", "clients": [1], "std": 0.1},
    {"kind": "gaussian", "clients": [2], "std": 0.01},
    {"kind": "sign_flip", "clients": [3], "scale": 1.0},
    {"kind": "scaled", "clients": [4], "scale": 2.0},
    {"kind": "thief", "clients": [5], "victim": 0},
    {"kind": "thief", "clients": [6], "copy": "global", "noise_std": 0.001},
    {"kind": "lazy", "clients": [7], "step_fraction": 0.5},
]


def test_pol_at_sigma_zero_catches_every_cheater_and_accepts_honest(tmp_path):
    # Prepare: sigma = 0, so honest replays are bit-exact and any departure rejects.
    data = tiny_spec(simulation={"clients": 9, "rounds": 1, "defence": "pol"}, sampling={"setting": "S-1-1-0.1"},
                     adversaries=EVERY_CHEATER)

    # Execute
    records = build(data, tmp_path).run("pol")

    # Assert
    pol = records[1].pol
    by_role = {f"{o.role}{o.client}": o for o in pol.outcomes}
    assert pol.challenges_issued == 9
    assert pol.honest_wrongly_rejected == 0 and pol.honest_challenged == 2
    assert pol.cheaters_caught == pol.cheaters_challenged == 7
    assert by_role["honest0"].max_distance == 0.0 and by_role["honest8"].max_distance == 0.0
    assert "final checkpoint" not in by_role["thief5"].reason  # caught by replay, not a sloppy forgery
    assert sorted(records[1].aggregation.selected_clients) == [0, 8]
    summary = detection_summary(records)
    assert summary.pol.caught_rate == 1.0 and summary.pol.false_reject_rate == 0.0
    assert detection_auc({"honest": [0.0, 0.5], "thief": [2.0, math.nan]}).auc == 1.0


def test_multikrum_drops_outliers_but_not_a_copying_thief(tmp_path):
    # Prepare: 7 clients, f = 2; two loud Byzantine clients and a thief copying client 0.
    data = tiny_spec(simulation={"clients": 7, "rounds": 1, "defence": "multikrum"},
                     sampling={"setting": "S-1-1-0.12"}, aggregation={"f": 2},
                     adversaries=[{"kind": "scaled", "clients": [1], "scale": 20.0},
                                  {"kind": "random_weights", "clients": [3], "std": 1.0},
                                  {"kind": "thief", "clients": [5], "victim": 0}])

    # Execute
    record = build(data, tmp_path).run("multikrum")[1]

    # Assert: the exact copy sits at distance 0 from its victim, the best score there is
    selected = record.aggregation.selected_clients
    assert 1 not in selected and 3 not in selected
    assert 5 in selected and 0 in selected
    assert record.pairwise_distances[0][5] == 0.0
    assert record.aggregation.m == 5


def test_pol_at_sigma_above_zero_catches_loud_cheats_only(tmp_path):
    # Prepare: sigma 0.3. The auto threshold is now the replay spread on re-obfuscated data. On IID
    # synthetic bars with two local steps per segment, a thief's straight line (towards a model
    # trained on the same distribution) stays inside that spread, and its update ratios (about 1.26
    # and 0.9) average below 1.1: honest segments show single ratios up to 1.43. Honest clients and
    # that thief reproduce, but the summed tolerance admits a drift onto another model: the verdict
    # is "undecidable" for both, which the server does not reject. The thief that copies the global
    # model claims updates 7 x too short: a falsified lr.
    data = tiny_spec(simulation={"clients": 9, "rounds": 1, "defence": "pol"}, sampling={"setting": "S-1-1-0.1"},
                     pol={"sigma": 0.3}, adversaries=EVERY_CHEATER)

    # Execute
    pol = build(data, tmp_path).run("pol")[1].pol

    # Assert
    verdicts = {(o.role, o.client): o for o in pol.outcomes}
    assert pol.honest_wrongly_rejected == 0
    assert not verdicts[("random_weights", 1)].accepted and not verdicts[("sign_flip", 3)].accepted
    assert verdicts[("thief", 5)].reason.startswith("undecidable at sigma 0.3")
    assert not verdicts[("thief", 6)].accepted and "falsified lr?" in verdicts[("thief", 6)].reason
    assert verdicts[("honest", 0)].accepted and verdicts[("honest", 0)].reason.startswith("undecidable at sigma 0.3")
    # the lazy client's stretched history repeats Adam states: its moments do not decay as Adam's do,
    # which the verifier's moment-consistency check sees at any sigma
    assert not verdicts[("lazy", 7)].accepted and verdicts[("lazy", 7)].reason.startswith("moments check failed")
    assert verdicts[("honest", 0)].max_distance > 0.0  # no longer a bit-exact replay


def test_challenger_utility_and_report(tmp_path):
    data = tiny_spec(simulation={"rounds": 1, "defence": "all"}, pol={"sigma": 0.3, "utility_epochs": 1},
                     adversaries=[{"kind": "sign_flip", "clients": [2], "scale": 3.0}])
    results = run_simulation(spec_from_dict(data, "tiny.toml"), tmp_path, source=make_source())
    utility = results["pol"][-1].utility
    assert utility.received_clients == (0, 1, 2, 3, 4, 5)
    assert utility.baseline_accuracy == 0.1 and 0.0 <= utility.accuracy_obfuscated <= 1.0
    assert utility.privacy.psnr_db == pytest.approx(-20 * math.log10(0.3), abs=0.2)
    assert results["none"][-1].utility is None
    for path in tmp_path.rglob("record.json"):  # the typed records read every stored record back unchanged
        stored = json.loads(path.read_text())
        assert RoundRecord.from_dict(stored).to_dict() == stored
    report = write_fl_report(tmp_path)
    text = report.read_text()
    for defence in ("no defence", "Multi-Krum", "PoL challenges", "PoL + Multi-Krum"):
        assert defence in text
    page = (tmp_path / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and page.count("data:image/png;base64,") == 3
    assert "<table>" in page and "PoL + Multi-Krum" in page and "src=\"figures/" not in page
    for figure in ("fl_accuracy", "fl_detection", "fl_pud"):
        assert (tmp_path / "figures" / f"{figure}.png").stat().st_size > 0
        assert (tmp_path / "figures" / f"{figure}.svg").stat().st_size > 0


# ------------------------------------------------------------------------------------ CLI
def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONHASHSEED="0")
    return subprocess.run([sys.executable, "-m", "pudlab.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_cli_simulate_smoke(tmp_path):
    source = make_source(300)
    np.savez(tmp_path / "tiny.npz", x=source.train.images, y=source.train.labels)
    spec = tiny_spec(simulation={"dataset": str(tmp_path / "tiny.npz"), "clients": 5, "rounds": 1},
                     sampling={"setting": "S-1-1-0.2"},
                     adversaries=[{"kind": "thief", "clients": [4], "copy": "global", "noise_std": 0.01}])
    lines = []
    for section, values in spec.items():
        if section == "adversaries":
            for adversary in values:
                lines.append("[[adversaries]]")
                lines += [f"{k} = {json.dumps(v)}" for k, v in adversary.items()]
        else:
            lines.append(f"[{section}]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    (tmp_path / "spec.toml").write_text("\n".join(lines) + "\n")

    done = _cli("fl", "simulate", "spec.toml", "--store", "store", "--defence", "pol", "--rounds", "2",
                "--set", "training.lr=0.005", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["defences"]["pol"]["rounds"] == 2
    assert summary["defences"]["pol"]["detection"]["pol"]["cheaters_caught"] == 2
    assert (tmp_path / "store" / "report.md").exists()

    bad = _cli("fl", "simulate", "spec.toml", "--store", "store", "--set", "training.lr=-1", cwd=tmp_path)
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == [
        "error: spec.toml: training.lr = -1; expected a number > 0"]


@pytest.mark.parametrize("sigma", [0.0, 0.1])
def test_pol_catches_a_thief_whose_forged_moments_replay_onto_the_stolen_model(tmp_path, sigma):
    # Prepare: a thief copies client 0's model and answers the challenge with its own training whose
    # Adam moments before the last segment are crafted so that replaying that segment lands on it.
    data = tiny_spec(simulation={"clients": 6, "rounds": 1, "defence": "pol"}, sampling={"setting": "S-1-1-0.1"},
                     pol={"sigma": sigma}, adversaries=[{"kind": "thief", "clients": [5], "victim": 0,
                                                         "forgery": "moments"}])

    # Execute
    records = build(data, tmp_path).run("pol")

    # Assert: the forged bundle is well formed (its last segment replays), yet the verifier rejects it
    pol = records[1].pol
    by_role = {f"{o.role}{o.client}": o for o in pol.outcomes}
    assert not by_role["thief5"].accepted, by_role["thief5"].reason
    assert "final checkpoint" not in by_role["thief5"].reason and "malformed" not in by_role["thief5"].reason
    assert pol.honest_wrongly_rejected == 0 and pol.cheaters_caught == 1
    assert 5 not in records[1].aggregation.selected_clients


def test_thief_forgery_is_validated():
    with pytest.raises(SpecError, match=r"adversaries\[0\].forgery = 'magic'; expected one of interpolate, moments"):
        spec_from_dict(tiny_spec(adversaries=[{"kind": "thief", "clients": [1], "forgery": "magic"}]), "x.toml")
