"""Robust aggregation rules beside Multi-Krum, adaptive attacks, and the rule x attack table."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pudlab.fl import adversaries as adv
from pudlab.fl.aggregation import (
    KrumParameterError,
    bulyan,
    coordinate_median,
    multi_krum,
    trimmed_mean,
)
from pudlab.fl.robustness import RobustnessTable, robustness_table
from pudlab.fl.spec import AdversarySpec
from pudlab.fl.spec_reader import spec_from_dict

from .conftest import make_source
from .test_fl import tiny_spec


def test_coordinate_rules_hand_computed_and_robust_to_one_outlier():
    updates = [np.array([0.0, 1.0]), np.array([1.0, 2.0]), np.array([2.0, 3.0]), np.array([1e6, -1e6])]
    assert coordinate_median(updates).aggregate.tolist() == [1.5, 1.5]
    assert trimmed_mean(updates, f=1).aggregate.tolist() == [1.5, 1.5]
    with pytest.raises(KrumParameterError, match="n > 2f"):
        trimmed_mean(updates, f=2)
    honest = [np.full(3, float(v)) for v in (0.9, 1.0, 1.1, 1.0, 0.95, 1.05)]
    result = bulyan([*honest, np.full(3, 1e3)], f=1)
    assert 6 not in result.selected and np.allclose(result.aggregate, 1.0, atol=0.06)
    with pytest.raises(KrumParameterError, match="4f \\+ 3"):
        bulyan(honest, f=1)
    weights = [{"a": torch.full((2,), float(v))} for v in (0, 1, 5)]
    assert coordinate_median(weights).aggregate["a"].dtype == torch.float32


def test_bulyan_hand_computed():
    # Prepare: n = 7, f = 1 (n >= 4f + 3): theta = n - 2f = 5 picked by repeated Krum, beta = theta - 2f = 3.
    updates = [np.array([v]) for v in (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 100.0)]
    # Krum over all 7 (n - f - 2 = 4 nearest): 0: 1+4+9+16, 1: 1+1+4+9, 2: 1+1+4+4, 3: 1+1+4+4, 4: 15, 5: 30,
    # 100: 95^2 + 96^2 + 97^2 + 98^2. Picks 2; then over the 6 left (3 nearest) 3 scores 1+4+4 = 9 and is picked;
    # over 5 (2 nearest) 1 and 4 tie at 10, 1 first; over 4 (1 nearest) 4 scores 1; then 0 of {0, 5, 100}.
    expected_scores = [30.0, 15.0, 10.0, 10.0, 15.0, 30.0, 95.0**2 + 96**2 + 97**2 + 98**2]

    # Execute
    result = bulyan(updates, f=1)

    # Assert: the outlier is never picked; of the picked 0..4 the beta = 3 values nearest their median 2
    # are 2, 1, 3, whose mean is 2
    assert result.selected == (0, 1, 2, 3, 4)
    assert result.scores.tolist() == expected_scores
    assert result.aggregate.tolist() == [2.0]
    assert bulyan([np.array([v]) for v in (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, -100.0)], f=1).aggregate.tolist() == [2.0]


def _weights(vector) -> dict[str, torch.Tensor]:
    return {"w": torch.tensor(vector, dtype=torch.float32)}


def test_alie_hides_inside_the_honest_spread_where_a_loud_flip_does_not():
    rng = np.random.default_rng(0)
    g = _weights(np.zeros(50))
    honest = [_weights(1.0 + rng.normal(0, 0.2, 50)) for _ in range(6)]
    alie = AdversarySpec(kind="alie", clients=(6,))
    crafted = adv.adaptive_models(alie, g, honest, [honest[0]], clients=7, f=1, rng=rng)[0]
    assert adv.alie_z(7, 1) > 0
    kept = multi_krum([*honest, crafted], f=1).selected
    assert 6 in kept  # the adaptive update passes Multi-Krum ...
    flipped = adv.sign_flip_update(g, honest[0], scale=5.0)
    assert 6 not in multi_krum([*honest, flipped], f=1).selected  # ... a loud one does not


def test_fang_krum_gets_krum_to_pick_a_crafted_model():
    rng = np.random.default_rng(1)
    g = _weights(np.zeros(20))
    # the regime of deep-net updates: a small common direction under much per-client noise
    honest = [_weights(0.2 + rng.normal(0, 1.0, 20)) for _ in range(5)]
    attack = AdversarySpec(kind="fang_krum", clients=(5, 6))
    crafted = adv.adaptive_models(attack, g, honest, honest[:2], clients=7, f=2, rng=rng)
    picked = multi_krum([*honest, *crafted], f=2, m=1).selected[0]
    assert picked in (5, 6)
    assert float(crafted[0]["w"].mean()) < 0  # against the honest direction


def test_inflating_client_claims_more_samples_in_a_round(tmp_path):
    from .test_fl import build

    data = tiny_spec(simulation={"rounds": 1},
                     adversaries=[{"kind": "inflate", "clients": [2], "factor": 50.0, "scale": 1.0}])
    record = build(data, tmp_path).run("none")[1]
    claims = {c.client: c.claimed_samples for c in record.clients}
    assert claims[2] == 50 * claims[1]
    with pytest.raises(Exception, match="factor"):
        spec_from_dict(tiny_spec(adversaries=[{"kind": "inflate", "clients": [2], "factor": 0.5}]), "x.toml")


@pytest.mark.slow
def test_robustness_table_runs_every_cell(tmp_path):
    spec = spec_from_dict(tiny_spec(simulation={"clients": 7, "rounds": 1}, sampling={"setting": "S-1-1-0.12"}),
                          "tiny.toml")
    table = robustness_table(spec, tmp_path, rules=("fedavg", "median"), attacks=("clean", "alie"),
                             source=make_source())
    assert set(table.accuracy) == {"fedavg", "median"} and set(table.accuracy["median"]) == {"clean", "alie"}
    assert table.pol_caught["fedavg"]["alie"][1] == 1  # one colluder challenged in one round
    assert RobustnessTable.from_dict(table.to_dict()) == table
    assert "| alie |" in table.markdown()
    assert (tmp_path / "robustness.json").exists() and (tmp_path / "median" / "alie").is_dir()


@pytest.mark.slow
def test_cli_robustness_writes_the_rule_by_attack_table(tmp_path):
    """``pudlab fl robustness`` runs each (rule, attack) with and without PoL and writes the table."""
    import json
    import subprocess
    import sys

    from pudlab.config import read_toml, resolve_spec

    source = make_source()
    data = tmp_path / "bars.npz"
    np.savez(data, x=source.train.images, y=source.train.labels)
    spec = tiny_spec(simulation={"clients": 7, "rounds": 1, "dataset": str(data)},
                     sampling={"setting": "S-1-1-0.12"})
    lines = []
    for section, values in spec.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    spec_file = tmp_path / "tiny.toml"
    spec_file.write_text("\n".join(lines) + "\n")
    assert read_toml(spec_file) == spec and resolve_spec("fl", spec_file) == spec_file
    store = tmp_path / "table"
    result = subprocess.run([sys.executable, "-m", "pudlab.cli", "fl", "robustness", str(spec_file), "--store",
                             str(store), "--rules", "fedavg,median", "--attacks", "clean,sign_flip", "--json"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    table = RobustnessTable.from_dict(json.loads(result.stdout))
    assert set(table.accuracy) == {"fedavg", "median"} and set(table.accuracy["fedavg"]) == {"clean", "sign_flip"}
    assert table.pol_caught["fedavg"]["sign_flip"] == [1, 1]  # the one colluder challenged and caught
    assert "| sign_flip |" in (store / "robustness.md").read_text()
    bad = subprocess.run([sys.executable, "-m", "pudlab.cli", "fl", "robustness", str(spec_file), "--store",
                          str(tmp_path / "x"), "--rules", "fedavg,nonsense"], capture_output=True, text=True)
    assert bad.returncode != 0 and "nonsense" in bad.stderr and "Traceback" not in bad.stderr
