import math

import numpy as np
import pytest
import torch

from pudlab.errors import ModelError, PudlabError
from pudlab.io import load_weights, save_weights
from pudlab.metrics import distinguishability, model_distance, per_layer_distance
from pudlab.model import MCnn, ModelConfig, build_model, initial_state
from pudlab.train.trainer import TrainConfig, Trainer, epoch_batches, train_model

from .conftest import make_images

SMALL = ModelConfig((1, 12, 12), (4, 8, 8), hidden=16)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 12, 12), (3, 9, 17)])
def test_any_input_shape(shape):
    config = ModelConfig(shape, (4, 4, 8), hidden=8)
    model = build_model(config, initial_state(config))
    assert model(torch.zeros(2, *shape)).shape == (2, 10)


def test_paper_architecture():
    model = MCnn(ModelConfig((1, 28, 28)))
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 32, 64, 64, 128, 128]
    assert model.dense1.in_features == 128 * 3 * 3 and model.dense1.out_features == 128
    assert sum(p.numel() for p in model.parameters()) == 435306  # as in shared/bench


def test_initial_state_is_seeded():
    a, b, c = initial_state(SMALL, init_seed=1), initial_state(SMALL, init_seed=1), initial_state(SMALL, init_seed=2)
    assert model_distance(a, b) == 0.0
    assert model_distance(a, c) > 0.0
    assert all(torch.count_nonzero(t) == 0 for n, t in a.items() if n.endswith("bias"))


def test_bad_state_rejected():
    state = initial_state(SMALL)
    state.pop("dense2.bias")
    with pytest.raises(ModelError, match="missing"):
        build_model(SMALL, state)
    with pytest.raises(ModelError):
        ModelConfig((1, 4, 4))


def test_epoch_batches_cover_each_sample_once():
    batches = epoch_batches(100, 32, shuffle_seed=3, epoch=2)
    assert [len(b) for b in batches] == [32, 32, 32, 4]
    assert sorted(np.concatenate(batches)) == list(range(100))
    assert not np.array_equal(np.concatenate(batches), np.concatenate(epoch_batches(100, 32, shuffle_seed=3, epoch=3)))


def _train(seed=0, epochs=2, data_seed=0, **kwargs):
    data = make_images(200, (1, 12, 12), seed=data_seed)
    eval_set = make_images(100, (1, 12, 12), seed=99)
    return train_model(data, eval_set, SMALL, initial_state(SMALL), TrainConfig(epochs=epochs, batch_size=32, lr=3e-3,
                                                                                shuffle_seed=seed, **kwargs))


def test_training_is_deterministic():
    first, second = _train(), _train()
    assert model_distance(first.weights, second.weights) == 0.0
    assert [h.train_loss for h in first.history] == [h.train_loss for h in second.history]


def test_train_model_is_the_step_loop_that_proof_of_learning_replays():
    """train_model's epoch loop is Trainer.step over epoch_batches, bit for bit: the loop pol.prove
    logs and the verifier replays (and the FL clients run)."""
    data, config = make_images(100, (1, 12, 12), seed=3), TrainConfig(epochs=2, batch_size=32, lr=3e-3, shuffle_seed=4)
    trained = train_model(data, None, SMALL, initial_state(SMALL), config).weights
    stepped = Trainer(SMALL, initial_state(SMALL), data, config)
    for epoch in range(config.epochs):
        for positions in epoch_batches(len(data), config.batch_size, shuffle_seed=config.shuffle_seed, epoch=epoch):
            stepped.step(positions)
    by_hand = stepped.weights()
    assert list(trained) == list(by_hand)
    assert all(torch.equal(trained[name], by_hand[name]) for name in by_hand)
    assert not torch.equal(trained["dense2.weight"], initial_state(SMALL)["dense2.weight"])  # it trained


def test_training_learns_and_shuffle_seed_matters():
    result = _train(epochs=6)
    assert result.history[-1].train_loss < result.history[0].train_loss
    assert result.final_accuracy > 0.5
    other = _train(seed=1, epochs=6)
    assert model_distance(result.weights, other.weights) > 0.0


def test_history_records_every_epoch():
    result = _train(epochs=3)
    assert [h.epoch for h in result.history] == [1, 2, 3]
    assert all(0 <= h.eval_accuracy <= 1 for h in result.history)
    assert result.environment["torch"] == torch.__version__


def test_train_config_validation():
    with pytest.raises(PudlabError):
        TrainConfig(precision="fp8")
    with pytest.raises(PudlabError):
        TrainConfig(lr=0)


def test_distance_hand_computed():
    a = {"l.weight": torch.tensor([[1.0, 2.0], [3.0, 4.0]]), "l.bias": torch.tensor([0.0, 1.0])}
    b = {"l.weight": torch.tensor([[1.0, 0.0], [3.0, 4.0]]), "l.bias": torch.tensor([2.0, 1.0])}
    assert model_distance(a, b) == pytest.approx(math.sqrt(8.0), abs=0)
    assert per_layer_distance(a, b) == {"l": pytest.approx(math.sqrt(8.0))}


def test_distance_matches_numpy_and_is_exact_for_close_models():
    rng = np.random.default_rng(0)
    a = {f"p{i}": torch.from_numpy(rng.standard_normal((50, 30)).astype(np.float32)) for i in range(3)}
    b = {k: v + 1e-6 * torch.from_numpy(rng.standard_normal(v.shape).astype(np.float32)) for k, v in a.items()}
    flat_a = np.concatenate([v.numpy().astype(np.float64).ravel() for v in a.values()])
    flat_b = np.concatenate([v.numpy().astype(np.float64).ravel() for v in b.values()])
    assert model_distance(a, b) == pytest.approx(np.linalg.norm(flat_a - flat_b), rel=1e-12)
    # the Gram identity loses this distance entirely in float32
    assert model_distance(a, b) > 0
    layers = per_layer_distance(a, b)
    assert math.sqrt(sum(v**2 for v in layers.values())) == pytest.approx(model_distance(a, b), rel=1e-12)


def test_distance_layout_mismatch():
    with pytest.raises(ModelError):
        model_distance({"a": torch.zeros(2)}, {"b": torch.zeros(2)})
    with pytest.raises(ModelError):
        model_distance({"a": torch.zeros(2)}, {"a": torch.zeros(3)})


def test_distinguishability():
    assert distinguishability(1.5, 4.0) == 2.5


def test_weights_round_trip_keeps_order(tmp_path):
    weights = initial_state(SMALL, init_seed=3)
    save_weights(tmp_path / "w.safetensors", weights)
    loaded = load_weights(tmp_path / "w.safetensors")
    assert list(loaded) == list(weights)
    assert model_distance(loaded, weights) == 0.0
    assert not list(tmp_path.glob(".*tmp"))


def test_load_weights_errors(tmp_path):
    with pytest.raises(ModelError, match="no such weight file"):
        load_weights(tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(ModelError, match="not a valid safetensors"):
        load_weights(bad)
