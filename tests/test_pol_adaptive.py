"""Adaptive thieves against the PoL verifier (issue 23): each builds a bundle against the verifier's code,
each is shown to work against a verifier without the new defences (the control: top-Q only, no drift
limit, or the prover's own sigma), and none is accepted (exit 0) by the default verifier.

Tiny synthetic data (12x12 bars, widths 4/8/8), one CPU thread. The data owner's release keys are
insecure demo keys (reproducible); the verifier holds the claimed owner's verification key.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from pudlab.io import weights_sha256
from pudlab.metrics import model_distance
from pudlab.model import ModelConfig, build_model, initial_state
from pudlab.obfuscation import ReleaseKey, release, release_manifest
from pudlab.pol import forgers, thieves
from pudlab.pol.bundle import open_bundle
from pudlab.pol.manifest import NoiseClaim
from pudlab.pol.prover import prove, reshare
from pudlab.pol.verdict import EXIT_ACCEPT, EXIT_REJECT, EXIT_UNDECIDABLE
from pudlab.pol.verifier import (
    VerifyOptions,
    draw_segments,
    replay_plan,
    select_segments,
    verify_bundle,
    verify_status,
)
from pudlab.release_auth import VerificationKey
from pudlab.train.trainer import TrainConfig

from .conftest import make_images

MODEL = ModelConfig((1, 12, 12), (4, 8, 8), hidden=16)
TRAIN = TrainConfig(epochs=2, batch_size=16, lr=1e-3, shuffle_seed=3)
SEED_I, SEED_J = 101, 202  # the owners' (insecure, reproducible) release keys
KEY_I, KEY_J = ReleaseKey.from_insecure_seed(SEED_I), ReleaseKey.from_insecure_seed(SEED_J)
VK_I, VK_J = VerificationKey.of(KEY_I), VerificationKey.of(KEY_J)


def _release(data, sigma, key, seed):
    shared = release(data, sigma=sigma, key=key)
    return shared, release_manifest(shared, sigma=sigma, fraction=1.0, clip=False, key=key, insecure_seed=seed)


def _noise(sigma, key):
    return NoiseClaim(sigma, 1.0, False, key.key_id)


def _defaults(owner: VerificationKey) -> VerifyOptions:
    """The default verifier, holding the claimed owner's key (its secret seed fixed for reproducibility)."""
    return VerifyOptions(owner_key=owner, verifier_seed=7)


def _old(owner: VerificationKey, **changes) -> VerifyOptions:
    """The control: the verifier as it was before (top-Q only, never undecidable, lr ratio up to 1.3)."""
    options = VerifyOptions(owner_key=owner, verifier_seed=7, random_segments=0, max_drift_share=None)
    return replace(options, policy=replace(options.policy, max_update_ratio=1.3, reject_update_ratio=1.3), **changes)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Owner i's data and the victim's honest bundle at sigma 0 (K = 4), and a thief's own data T_j."""
    root = tmp_path_factory.mktemp("adaptive")
    private_i, private_j = make_images(100, seed=1), make_images(100, seed=9)
    shared, manifest = _release(private_i, 0.0, KEY_I, SEED_I)
    victim = prove(private_i, shared, MODEL, TRAIN, initial_weights=initial_state(MODEL), init_seed=0,
                   noise=_noise(0.0, KEY_I), checkpoint_every=4, out=root / "victim", threads=1,
                   release_manifest=manifest)
    return {"root": root, "victim": victim, "private_i": private_i, "private_j": private_j}


def _shared_at(world, sigma):
    """The victim's training shared as owner i's release at ``sigma``."""
    shared, manifest = _release(world["private_i"], sigma, KEY_I, SEED_I)
    return reshare(world["victim"].path, world["root"] / f"victim-{sigma:g}", shared, _noise(sigma, KEY_I),
                   release_manifest=manifest, overwrite=True)


# ------------------------------------------------------------------------------------ fake trajectory
@pytest.mark.parametrize(("kind", "honest_per_epoch"), [
    ("data", 2), pytest.param("nodata", 2, marks=pytest.mark.slow), pytest.param("data", 4, marks=pytest.mark.slow),
    pytest.param("nodata", 4, marks=pytest.mark.slow)])
def test_fake_trajectory_thief_is_caught_by_segments_it_cannot_predict(world, tmp_path, kind, honest_per_epoch):
    """A thief holding only W_T: a few real segments per epoch, the rest exact Adam steps on solved gradients
    onto W_T, each smaller than the real ones; K = 1 and twice the victim's epochs (room for the fakes)."""
    data = world["private_j"] if kind == "data" else thieves.noise_images(world["private_j"], seed=4)
    shared, manifest = _release(data, 0.0, KEY_J, SEED_J)
    path, honest = thieves.forge_fake_trajectory(
        tmp_path / "fake", target=world["victim"].final_weights, model_config=MODEL,
        train_config=replace(TRAIN, epochs=4, shuffle_seed=11), shared=shared, noise=_noise(0.0, KEY_J),
        checkpoint_every=1, honest_per_epoch=honest_per_epoch, release_manifest=manifest)
    verdict = verify_bundle(path, _defaults(VK_J))
    # the forgery works: the stolen model bit for bit, most segments fake, and today's top-Q never replays one
    assert open_bundle(path).manifest.final_weights_sha256 == weights_sha256(world["victim"].final_weights)
    fake_share = 1 - len(honest) / verdict.num_segments
    assert fake_share >= 0.45 and thieves.top_q_plan_is_honest(path, honest)
    old = verify_bundle(path, _old(VK_J))
    assert old.exit_code == EXIT_ACCEPT, old.reason
    # segments drawn from the verifier's secret seed replay fakes: rejected, and the verdict states its odds
    assert verdict.exit_code == EXIT_REJECT, verdict.reason
    assert any(s.role == "random" and not s.passed and s.index not in honest for s in verdict.segments)
    assert verdict.challenge is not None and verdict.challenge.catch_probability["0.5"] == pytest.approx(1 - 0.5**8)


def test_random_draws_catch_a_single_edit_with_the_stated_probability(world, tmp_path):
    """One checkpoint pulled back by 0.01 x its update (resealed) in a 14-segment bundle: caught exactly when its segment, or the
    next one (it starts from the edited checkpoint), is drawn (top-Q alone never replays either)."""
    shared, manifest = _release(world["private_i"], 0.0, KEY_I, SEED_I)
    fine = prove(world["private_i"], shared, MODEL, TRAIN, initial_weights=initial_state(MODEL), init_seed=0,
                 noise=_noise(0.0, KEY_I), checkpoint_every=1, out=tmp_path / "fine", threads=1,
                 release_manifest=manifest)
    bundle = open_bundle(fine.path)
    top = replay_plan(select_segments(bundle.update_norms, bundle.segment_epochs, 1))
    # a late segment (its moves are below Adam's bound) that top-Q never replays, nor the one after it
    edited = max(i for i in range(1, len(bundle.update_norms) - 1) if i not in dict(top) and i + 1 not in dict(top))
    before = bundle.checkpoint(edited - 1).weights
    path = forgers.copy_bundle(fine.path, tmp_path / "edited")
    forgers.edit_checkpoint_weights(path, edited, lambda w: {n: t - 0.01 * (t - before[n]) for n, t in w.items()})
    forgers.reseal_bundle(path)
    assert verify_status(path, _old(VK_I))[0] == EXIT_ACCEPT
    root = open_bundle(path).manifest.trajectory.root
    caught = []
    for seed in range(6):
        status = verify_status(path, replace(_defaults(VK_I), verifier_seed=seed))[0]
        drawn = draw_segments(14, 8, seed=seed, trajectory_root=root)
        assert status == (EXIT_REJECT if {edited, edited + 1} & set(drawn) else EXIT_ACCEPT), (seed, drawn, edited)
        caught.append(status == EXIT_REJECT)
    assert 0 < sum(caught) < len(caught)  # the draws vary with the seed


# ------------------------------------------------------------------------------------ drift
@pytest.mark.parametrize("sigma", [0.1, pytest.param(0.3, marks=pytest.mark.slow),
                                   pytest.param(0.5, marks=pytest.mark.slow), pytest.param(1.0, marks=pytest.mark.slow)])
def test_drift_thief_is_not_accepted(world, tmp_path, sigma):
    """Every segment an exact replay on the thief's own release plus a drift toward W_T of 0.6 x the
    threshold the thief estimates with his own calibration seed: accepted by today's verifier even replaying
    every segment; the default verifier answers undecidable (the tolerance admits the drift)."""
    shared, manifest = _release(world["private_j"], sigma, KEY_J, SEED_J)
    own = prove(shared, shared, MODEL, replace(TRAIN, shuffle_seed=11), initial_weights=initial_state(MODEL),
                init_seed=0, noise=_noise(sigma, KEY_J), checkpoint_every=4, out=tmp_path / "own", threads=1,
                release_manifest=manifest)
    target = world["victim"].final_weights
    final = thieves.forge_drift(own.path, tmp_path / "drift", target, drift_share=0.6, thief_seed=99)
    assert model_distance(final, target) < 0.7 * model_distance(own.final_weights, target)  # it got closer
    old = verify_bundle(tmp_path / "drift", _old(VK_J, top_q=0))
    assert old.exit_code == EXIT_ACCEPT, old.reason
    verdict = verify_bundle(tmp_path / "drift", _defaults(VK_J))
    assert verdict.exit_code == EXIT_UNDECIDABLE and verdict.reason.startswith(f"undecidable at sigma {sigma:g}")
    assert verdict.drift is not None and verdict.drift.share >= verdict.drift.limit


# ------------------------------------------------------------------------------------ claims about O(T)
@pytest.mark.parametrize("claimed", [1.0, 3.0])
def test_sigma_inflation_is_rejected(world, tmp_path, claimed):
    """A spoof at sigma 0.1 (O(T_j), labels aligned) claiming a larger sigma: the owner's release says 0.1."""
    aligned = forgers.align_labels(world["private_i"].labels, world["private_j"])
    shared, manifest = _release(aligned, 0.1, KEY_J, SEED_J)
    spoof = reshare(world["victim"].path, tmp_path / "spoof", shared, _noise(0.1, KEY_J), release_manifest=manifest)
    inflated = thieves.inflate_sigma(spoof, tmp_path / "inflated", claimed)
    believer = _old(None, top_q=0, release_noise=NoiseClaim(claimed, 1.0, False))  # a verifier who takes the claim
    assert verify_status(inflated, believer)[0] == EXIT_ACCEPT
    status, reason, _ = verify_status(inflated, _defaults(VK_J))
    assert status == EXIT_REJECT and reason.startswith("release check failed") and "sigma 0.1" in reason, reason
    status, reason, _ = verify_status(inflated, replace(_defaults(VK_J), owner_key=None))  # no key: sigma unproven
    assert status == EXIT_REJECT and "prover's own claim" in reason, reason


@pytest.mark.parametrize("manifest_of", ["other", "owner", "none"])
def test_release_substitution_is_rejected(world, tmp_path, manifest_of):
    """A trainer who trained on other data (T_j, released under key j) claims owner i's key id."""
    shared, other_manifest = _release(world["private_j"], 0.0, KEY_J, SEED_J)
    trained = prove(world["private_j"], shared, MODEL, replace(TRAIN, shuffle_seed=11),
                    initial_weights=initial_state(MODEL), init_seed=0, noise=_noise(0.0, KEY_J), checkpoint_every=4,
                    out=tmp_path / "other", threads=1)
    owner_manifest = json.loads((world["victim"].path / "release.json").read_text())
    chosen = {"other": other_manifest, "owner": owner_manifest, "none": None}[manifest_of]
    path = thieves.substitute_release(trained.path, tmp_path / "sub", shared, owner_key_id=KEY_I.key_id,
                                      release_manifest=chosen)
    assert verify_status(path, _old(None))[0] == EXIT_ACCEPT  # nothing bound O(T) to its owner
    status, reason, _ = verify_status(path, _defaults(VK_I))
    assert status == EXIT_REJECT and reason.startswith("release check failed"), reason


# ------------------------------------------------------------------------------------ backdoor, edits, lr
def _attack_success(weights: dict[str, torch.Tensor]) -> float:
    test = make_images(300, seed=5)
    triggered = thieves.stamp_trigger(test.images[test.labels != 0])
    model = build_model(MODEL, weights).eval()
    with torch.no_grad():
        return float((model(torch.from_numpy(triggered)).argmax(1) == 0).float().mean())


def test_backdoor_at_sigma_0_1_is_not_accepted(world, tmp_path):
    """10 % dirty-label triggered samples, 4 epochs, sharing owner i's clean release at sigma 0.1."""
    train = replace(TRAIN, epochs=4)
    poisoned, _ = thieves.poison(world["private_i"], share=0.1, target_label=0, seed=1)
    trained = prove(poisoned, poisoned, MODEL, train, initial_weights=initial_state(MODEL), init_seed=0,
                    noise=_noise(0.0, KEY_I), checkpoint_every=4, out=tmp_path / "trained", threads=1)
    clean = prove(world["private_i"], world["private_i"], MODEL, train, initial_weights=initial_state(MODEL),
                  init_seed=0, noise=_noise(0.0, KEY_I), checkpoint_every=4, out=tmp_path / "clean", threads=1)
    assert _attack_success(trained.final_weights) > _attack_success(clean.final_weights) + 0.05
    shared, manifest = _release(world["private_i"], 0.1, KEY_I, SEED_I)
    path = reshare(trained.path, tmp_path / "backdoor", shared, _noise(0.1, KEY_I), release_manifest=manifest)
    assert verify_status(path, _old(VK_I))[0] == EXIT_ACCEPT
    assert verify_status(path, _defaults(VK_I))[0] in (EXIT_REJECT, EXIT_UNDECIDABLE)


@pytest.mark.parametrize(("sigma", "edit"), [
    (0.1, "edit-0.01"), (0.3, "lr-1.1"),
    *(pytest.param(sigma, edit, marks=pytest.mark.slow) for sigma, edit in (
        (0.1, "edit-0.03"), (0.1, "lr-1.1"), (0.1, "lr-1.25"), (0.3, "edit-0.01"), (0.3, "edit-0.03"), (0.3, "lr-1.25")))])
def test_small_edits_and_lr_are_not_accepted_at_sigma(world, tmp_path, sigma, edit):
    """Resealed edits of 0.01-0.03 x an update and a claimed lr x1.1-1.25: within today's tolerance even
    replaying every segment; never accepted by the default verifier."""
    honest = _shared_at(world, sigma)
    kind, factor = edit.split("-")
    path = (forgers.tamper_checkpoint(honest, tmp_path / "t", scale=float(factor)) if kind == "edit" else
            forgers.tamper_hyperparameter(honest, tmp_path / "t", factor=float(factor)))
    assert verify_status(path, _old(VK_I, top_q=0))[0] == EXIT_ACCEPT
    status, reason, _ = verify_status(path, _defaults(VK_I))
    assert status in (EXIT_REJECT, EXIT_UNDECIDABLE), reason


@pytest.mark.parametrize("factor", [1.1, 1.25])
def test_falsified_lr_is_rejected_at_sigma_zero(world, tmp_path, factor):
    path = forgers.tamper_hyperparameter(world["victim"].path, tmp_path / "lr", factor=factor)
    status, reason, _ = verify_status(path, _defaults(VK_I))
    assert status == EXIT_REJECT and "do not reproduce" in reason, reason
