"""DP-SGD through Opacus (the dp extra): accounting against Opacus's own, the noise-0 / no-clip control
against plain training, clipping against a per-sample reference, Poisson batches and determinism."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from pudlab.errors import PudlabError
from tests.conftest import make_images

pytest.importorskip("opacus")
torch = pytest.importorskip("torch")

from pudlab.model import ModelConfig, build_model, initial_state  # noqa: E402
from pudlab.privacy.dpsgd import (  # noqa: E402
    DpSgdConfig,
    batch_positions,
    dpsgd_epsilon,
    dpsgd_record,
    noise_for_epsilon,
    replace_one_epsilon,
    train_dpsgd,
    train_module_dpsgd,
)
from pudlab.train.trainer import TrainConfig, train_model  # noqa: E402

SHAPE = (1, 12, 12)
MODEL = ModelConfig(SHAPE, (4, 4, 4), 8, 10)


@pytest.mark.parametrize("accountant", ["rdp", "prv"])
def test_epsilon_matches_opacus_privacy_engine(accountant):
    """Our epsilon for (noise, q, steps) equals what Opacus's PrivacyEngine reports after training that long."""
    from opacus import PrivacyEngine
    from torch.utils.data import DataLoader, TensorDataset

    generator = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(200, 5, generator=generator), torch.randint(0, 2, (200,), generator=generator))
    model = torch.nn.Linear(5, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        engine = PrivacyEngine(accountant=accountant)
        model, optimizer, loader = engine.make_private(
            module=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
            data_loader=DataLoader(data, batch_size=20), noise_multiplier=1.3, max_grad_norm=1.0,
            noise_generator=torch.Generator().manual_seed(1))
        steps = 0
        for _ in range(2):
            for features, labels in loader:
                optimizer.zero_grad()
                torch.nn.functional.cross_entropy(model(features), labels).backward()
                optimizer.step()
                steps += 1
    theirs = engine.get_epsilon(1e-5)
    ours = dpsgd_epsilon(noise_multiplier=1.3, sample_rate=1 / len(loader), steps=steps, delta=1e-5,
                         accountant=accountant)
    assert steps == 20 and ours == pytest.approx(theirs, rel=1e-9)


def test_accounting_edges_and_bounds():
    args = {"sample_rate": 0.1, "steps": 100, "delta": 1e-5}
    assert dpsgd_epsilon(noise_multiplier=0.0, **args) == math.inf
    assert dpsgd_epsilon(noise_multiplier=1.0, sample_rate=0.1, steps=0, delta=1e-5) == 0.0
    epsilons = [dpsgd_epsilon(noise_multiplier=z, **args) for z in (0.5, 1.0, 2.0, 4.0)]
    assert epsilons == sorted(epsilons, reverse=True)  # more noise, less epsilon
    # replace-one bound: at least the add/remove epsilon, at most twice the add/remove epsilon at delta / 1e9
    bound = replace_one_epsilon(noise_multiplier=2.0, **args)
    assert epsilons[2] < bound <= 2 * dpsgd_epsilon(noise_multiplier=2.0, sample_rate=0.1, steps=100, delta=1e-14)
    assert replace_one_epsilon(noise_multiplier=0.0, **args) == math.inf
    # the noise Opacus's search finds reaches the target (from below, within its tolerance)
    noise = noise_for_epsilon(3.0, **args)
    assert dpsgd_epsilon(noise_multiplier=noise, **args) <= 3.0
    assert dpsgd_epsilon(noise_multiplier=noise * 0.95, **args) > 3.0
    record = dpsgd_record(DpSgdConfig(noise_multiplier=1.0), num_samples=100, batch_size=10, epochs=10)
    assert (record.sample_rate, record.steps) == (0.1, 100)
    assert record.epsilon == pytest.approx(epsilons[1])
    shuffled = dpsgd_record(DpSgdConfig(sampling="shuffle"), num_samples=100, batch_size=10, epochs=1)
    assert shuffled.epsilon is None and shuffled.epsilon_replace_one is None  # no proof for shuffled batches
    with pytest.raises(PudlabError, match="noise without a clip bound"):
        DpSgdConfig(noise_multiplier=1.0, max_grad_norm=None)
    with pytest.raises(PudlabError, match="accountant must be one of rdp, prv"):
        DpSgdConfig(accountant="gdp")


def test_noise_zero_without_clipping_equals_plain_training():
    """The negative control: DP-SGD's machinery with noise 0, no clip and the trainer's batches is plain Adam."""
    data, held_out = make_images(192, SHAPE, seed=1), make_images(60, SHAPE, seed=2)
    initial = initial_state(MODEL, init_seed=3)
    config = TrainConfig(epochs=2, batch_size=50, lr=1e-2, shuffle_seed=5)  # a short last batch too
    plain = train_model(data, held_out, MODEL, initial, config)
    private = train_dpsgd(data, held_out, MODEL, initial, config,
                          DpSgdConfig(noise_multiplier=0.0, max_grad_norm=None, sampling="shuffle"))
    assert set(plain.weights) == set(private.train.weights)
    moved = max(float((plain.weights[k] - initial[k]).abs().max()) for k in initial)
    gap = max(float((plain.weights[k] - private.train.weights[k]).abs().max()) for k in initial)
    assert moved > 1e-2 and gap < 1e-4, (moved, gap)
    assert private.train.history[-1].eval_accuracy == pytest.approx(plain.history[-1].eval_accuracy, abs=0.02)
    assert private.record.steps == 8 and private.train.environment["trainer"] == "dp-sgd"


def test_clipping_matches_a_per_sample_reference():
    """One DP step with noise 0 and a small clip: per-sample gradients (a loop), clipped, averaged, one Adam step."""
    data = make_images(24, SHAPE, seed=4)
    initial = initial_state(MODEL, init_seed=6)
    config = TrainConfig(epochs=1, batch_size=24, lr=1e-2)
    private = train_dpsgd(data, None, MODEL, initial, config,
                          DpSgdConfig(noise_multiplier=0.0, max_grad_norm=0.05, sampling="shuffle"))
    model = build_model(MODEL, initial)
    images, labels = torch.from_numpy(data.images), torch.from_numpy(data.labels)
    clipped = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    norms = []
    for index in range(len(data)):
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(images[index:index + 1]), labels[index:index + 1]).backward()
        norm = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in model.parameters()))
        norms.append(norm)
        for name, p in model.named_parameters():
            clipped[name] += p.grad * min(1.0, 0.05 / (norm + 1e-6))
    assert min(norms) > 0.05  # every sample is clipped: the test would see a missing clip
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, eps=1e-7)
    for name, p in model.named_parameters():
        p.grad = clipped[name] / len(data)
    optimizer.step()
    for name, p in model.named_parameters():
        assert torch.allclose(p.detach(), private.train.weights[name], atol=1e-5), name


def test_poisson_batches():
    sizes = [len(batch_positions(1000, step=s, sample_rate=0.1, batch_size=100, sampling="poisson", shuffle_seed=1))
             for s in range(50)]
    assert len(set(sizes)) > 5 and 80 < np.mean(sizes) < 120  # varying sizes around q N
    again = batch_positions(1000, step=3, sample_rate=0.1, batch_size=100, sampling="poisson", shuffle_seed=1)
    assert len(again) == sizes[3]  # a pure function of (seed, step)
    assert len(batch_positions(10, step=0, sample_rate=1e-9, batch_size=1, sampling="poisson", shuffle_seed=0)) == 0
    shuffled = [batch_positions(25, step=s, sample_rate=0.5, batch_size=10, sampling="shuffle", shuffle_seed=2)
                for s in range(3)]
    assert sorted(np.concatenate(shuffled).tolist()) == list(range(25))  # the trainer's epoch: a permutation


@pytest.mark.slow
def test_dpsgd_is_deterministic_and_steps_on_empty_batches():
    data = make_images(64, SHAPE, seed=7)
    initial = initial_state(MODEL, init_seed=8)
    config = TrainConfig(epochs=2, batch_size=16, lr=1e-2, shuffle_seed=2)
    dp = DpSgdConfig(noise_multiplier=1.0, max_grad_norm=1.0, noise_seed=3)
    first = train_dpsgd(data, None, MODEL, initial, config, dp)
    again = train_dpsgd(data, None, MODEL, initial, config, dp)
    other = train_dpsgd(data, None, MODEL, initial, config, DpSgdConfig(noise_multiplier=1.0, noise_seed=4))
    assert all(torch.equal(first.train.weights[k], again.train.weights[k]) for k in initial)  # seeded: bit-identical
    assert any(not torch.equal(first.train.weights[k], other.train.weights[k]) for k in initial)  # the noise seed counts
    # a rate so small that most batches are empty: noise-only steps, still the accounted number of steps
    sparse = train_dpsgd(data, None, MODEL, initial, config, DpSgdConfig(noise_multiplier=1.0, sample_rate=1e-3))
    assert sparse.record.steps == 8 and all(math.isfinite(float(w.sum())) for w in sparse.train.weights.values())
    assert any(not torch.equal(sparse.train.weights[k], initial[k]) for k in initial)


def test_unsupported_model_is_refused_by_name():
    data = make_images(16, SHAPE, seed=9)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.Flatten(),
                                torch.nn.Linear(2 * 10 * 10, 10))
    with pytest.raises(PudlabError, match="Opacus cannot train this model.*BatchNorm"):
        train_module_dpsgd(model, data, None, TrainConfig(epochs=1, batch_size=8), DpSgdConfig())


def test_a_users_model_trains():
    """Any module Opacus supports, not only M_cnn (here a small MLP)."""
    data = make_images(64, SHAPE, seed=10)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(144, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10))
    result = train_module_dpsgd(model, data, data, TrainConfig(epochs=2, batch_size=16, lr=1e-2),
                                DpSgdConfig(noise_multiplier=0.5))
    assert set(result.train.weights) == {"1.weight", "1.bias", "3.weight", "3.bias"}
    assert result.record.epsilon is not None and math.isfinite(result.record.epsilon)
    assert len(result.train.history) == 2
