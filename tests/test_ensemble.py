"""Lockstep ensemble trainer: equivalence with separate trainings, and its use by the engine."""

import numpy as np
import pytest
import torch

from pudlab.errors import PudlabError
from pudlab.metrics import model_distance, weight_norm
from pudlab.model import ModelConfig, build_model, initial_state
from pudlab.obfuscation import obfuscate
from pudlab.train.ensemble import (
    EnsembleMCnn,
    EnsembleTrainer,
    max_members,
    to_grouped_input,
    train_ensemble,
)
from pudlab.train.trainer import (
    Checkpointing,
    TrainConfig,
    Trainer,
    TrainingInterrupted,
    epoch_batches,
    train_model,
)

from .conftest import make_images

CONFIG = ModelConfig((1, 16, 16), (4, 8, 8), hidden=16)


@pytest.fixture
def members():
    base = make_images(192, (1, 16, 16))
    sets = [obfuscate(base, sigma=sigma, seed=1) for sigma in (0.0, 0.3, 1.0)]
    configs = [TrainConfig(epochs=2, batch_size=32, lr=3e-3, shuffle_seed=seed) for seed in (0, 1, 2)]
    return sets, configs, make_images(64, (1, 16, 16), seed=9)


def test_exact_mode_is_bit_identical_to_separate_trainings(members):
    sets, configs, eval_set = members
    init = initial_state(CONFIG)
    ensemble = train_ensemble(sets, eval_set, CONFIG, init, configs, mode="exact")
    for result, train_set, config in zip(ensemble, sets, configs, strict=True):
        single = train_model(train_set, eval_set, CONFIG, init, config)
        assert model_distance(result.weights, single.weights) == 0.0
        assert [h.train_loss for h in result.history] == [h.train_loss for h in single.history]
        assert [h.eval_accuracy for h in result.history] == [h.eval_accuracy for h in single.history]
    assert ensemble[0].environment["trainer"] == "ensemble-exact"


def test_resumed_exact_member_is_an_uninterrupted_single_training(members, tmp_path):
    """Stopped mid-epoch 2 and resumed from its checkpoint, each exact member still has, tensor for
    tensor, the weights and losses of its member trained alone without a stop."""
    sets, configs, eval_set = members
    init = initial_state(CONFIG)
    path, polls = tmp_path / "ensemble.pt", iter(range(1, 100))
    with pytest.raises(TrainingInterrupted):  # 6 steps an epoch: the 8th is inside the second
        train_ensemble(sets, eval_set, CONFIG, init, configs, mode="exact",
                       checkpoint=Checkpointing(path, 3600, identity="e", should_stop=lambda: next(polls) >= 8))
    resumed_from = Checkpointing(path, 3600, identity="e")
    ensemble = train_ensemble(sets, eval_set, CONFIG, init, configs, mode="exact", checkpoint=resumed_from)
    assert resumed_from.resumed_at == (1, 2)
    for result, train_set, config in zip(ensemble, sets, configs, strict=True):
        single = train_model(train_set, eval_set, CONFIG, init, config)
        assert list(result.weights) == list(single.weights)
        assert all(torch.equal(result.weights[name], single.weights[name]) for name in single.weights)
        assert [h.train_loss for h in result.history] == [h.train_loss for h in single.history]


def test_fused_weights_round_trip_and_forward_match():
    states = [initial_state(CONFIG, init_seed=seed) for seed in (1, 2)]
    model = EnsembleMCnn(CONFIG, 2)
    for member, state in enumerate(states):
        model.load_member(member, state)
    for member, state in enumerate(states):
        assert model_distance(model.member_state(member), state) == 0.0
        assert list(model.member_state(member)) == list(state)
    images = torch.rand(2, 5, 1, 16, 16)
    fused = model(to_grouped_input(images))
    for member, state in enumerate(states):
        single = build_model(CONFIG, state)(images[member])
        torch.testing.assert_close(fused[member], single, rtol=1e-5, atol=1e-6)


def test_fused_mode_matches_separate_training_within_1e_5(members):
    """Fused arithmetic rounds differently; over a few steps it stays within 1e-5 relative F-norm.
    (Training amplifies rounding differences: the module docstring gives the measured growth.)"""
    sets, configs, _ = members
    init = initial_state(CONFIG)
    fused = EnsembleTrainer(CONFIG, [init] * 3, sets, configs, mode="fused")
    singles = [Trainer(CONFIG, init, train_set, config) for train_set, config in zip(sets, configs, strict=True)]
    orders = [epoch_batches(len(sets[0]), 32, shuffle_seed=c.shuffle_seed, epoch=0) for c in configs]
    for step_batches in list(zip(*orders, strict=True))[:4]:
        losses = fused.step(np.stack(step_batches))
        for member, (single, positions) in enumerate(zip(singles, step_batches, strict=True)):
            assert float(losses[member]) == pytest.approx(float(single.step(positions)), rel=1e-5)
    for member, single in enumerate(singles):
        relative = model_distance(fused.member_weights(member), single.weights()) / weight_norm(single.weights())
        assert relative < 1e-5


def test_exact_mode_takes_any_sizes(members):
    """Members of different sizes: a member whose epoch is over sits out, bit-identically to training alone."""
    sets, configs, eval_set = members
    sized = [sets[0], sets[1].take(np.arange(70)), sets[2].take(np.arange(150))]
    init = initial_state(CONFIG)
    ensemble = train_ensemble(sized, eval_set, CONFIG, init, configs, mode="exact")
    for result, train_set, config in zip(ensemble, sized, configs, strict=True):
        assert model_distance(result.weights, train_model(train_set, eval_set, CONFIG, init, config).weights) == 0.0


def test_fused_mode_pads_unequal_last_batches(members):
    """Same steps per epoch, different last-batch sizes: padded samples are masked out of the loss."""
    sets, configs, _ = members
    sized = [sets[0].take(np.arange(180)), sets[1].take(np.arange(170)), sets[2]]  # 6 steps of 32 each
    init = initial_state(CONFIG)
    fused = EnsembleTrainer(CONFIG, [init] * 3, sized, configs, mode="fused")
    singles = [Trainer(CONFIG, init, train_set, config) for train_set, config in zip(sized, configs, strict=True)]
    orders = [epoch_batches(len(t), 32, shuffle_seed=c.shuffle_seed, epoch=0) for t, c in zip(sized, configs, strict=True)]
    last = [order[-1] for order in orders]
    assert len({len(batch) for batch in last}) == 3
    losses = fused.step(last)
    for member, single in enumerate(singles):
        assert float(losses[member]) == pytest.approx(float(single.step(last[member])), rel=1e-5)
        relative = model_distance(fused.member_weights(member), single.weights()) / weight_norm(single.weights())
        assert relative < 1e-5


def test_members_must_match(members):
    sets, configs, _ = members
    init = initial_state(CONFIG)
    with pytest.raises(PudlabError, match="same number of steps per epoch"):
        EnsembleTrainer(CONFIG, [init] * 2, [sets[0], sets[1].take(np.arange(10))], configs[:2], mode="fused")
    with pytest.raises(PudlabError, match="share every hyper-parameter"):
        EnsembleTrainer(CONFIG, [init] * 2, sets[:2], [configs[0], TrainConfig(epochs=2, batch_size=16)])
    with pytest.raises(PudlabError, match="ensemble mode"):
        EnsembleTrainer(CONFIG, [init], sets[:1], configs[:1], mode="magic")


def test_max_members_is_positive_and_shrinks_with_data():
    small = max_members(CONFIG, 100, 32)
    large = max_members(CONFIG, 10**7, 32)
    assert small >= large >= 1
