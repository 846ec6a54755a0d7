"""``pudlab pol``: prove, verify, evaluate. Heavy modules are imported inside the commands.

Exit status of every ``pol`` command: 0 success (``verify``: accept), 1 reject, 2 malformed or
tampered bundle, 3 any other error (a bad option, a missing file or dataset), 4 undecidable (``verify``:
the tolerance at the release's sigma cannot tell), with one line on stderr.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import click

from pudlab.cli._common import parse_floats, parse_widths, print_json, training_options
from pudlab.errors import BundleError, PudlabError

if TYPE_CHECKING:
    from pudlab.pol.policy import VerifyPolicy
    from pudlab.pol.verdict import SegmentResult

EXIT_REJECT, EXIT_MALFORMED, EXIT_ERROR = 1, 2, 3
EXIT_CODES_HELP = ("Exit status: 0 accept, 1 reject, 2 malformed or tampered bundle, 3 any other error (bad option, "
                   "missing file), 4 undecidable at the release's sigma.")


def _debug(ctx: click.Context) -> bool:
    return bool(ctx.find_root().params.get("debug"))


class PolGroup(click.Group):
    """Turns a :class:`BundleError` into one line and exit 2, usage and other errors into exit 3."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.exceptions.Exit:
            raise
        except click.ClickException as exc:  # usage errors: bad or missing options, a missing path
            exc.show()
            ctx.exit(EXIT_ERROR)
        except BundleError as exc:
            if _debug(ctx):
                raise
            click.echo(f"error: malformed or tampered bundle: {exc}", err=True)
            ctx.exit(EXIT_MALFORMED)
        except (PudlabError, OSError) as exc:
            if _debug(ctx):
                raise
            message = str(exc) if isinstance(exc, PudlabError) else f"{type(exc).__name__}: {exc}"
            click.echo(f"error: {message}", err=True)
            ctx.exit(EXIT_ERROR)


def _data_dir(ctx: click.Context) -> str | None:
    return getattr(ctx.find_root().obj, "data_dir", None)


@click.group("pol", cls=PolGroup)
def pol_group() -> None:
    """Privacy-preserving Proof-of-Learning: prove on T, share O(T), verify by replay (paper 5.3).

    Exit status: 0 accept (or success), 1 reject, 2 malformed or tampered bundle, 3 any other
    error (bad option, missing file), 4 undecidable (verify).
    """


# ---------------------------------------------------------------------------------------- prove
# long: one option per training, release-key and bundle choice, then one call to prove
@pol_group.command("prove", epilog="Exit status: 0 written, 3 any error (bad option, missing file).")
@click.argument("dataset")
@training_options
@click.option("--checkpoint-every", "checkpoint_every", type=int, default=10, show_default=True,
              help="K: optimizer steps between checkpoints (one more after the last step).")
@click.option("--threads", type=int, default=1, show_default=True,
              help="Intra-op CPU threads; recorded, the verifier replays with the same count (float sums depend on it).")
@click.option("--key-out", type=click.Path(dir_okay=False), default=None,
              help="Keep the fresh secret release key of O(T) in this new file (mode 0600). Never share it.")
@click.option("--key-file", type=click.Path(dir_okay=False), default=None,
              help="Share O(T) under an existing release key file (the same sigma reproduces that release exactly).")
@click.option("--verify-key-out", type=click.Path(dir_okay=False), default=None,
              help="Also write the owner's verification key (mode 0600) that a verifier needs to authenticate "
                   "the release (see `pol owner-key`); it cannot remove the noise.")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Bundle directory to write.")
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
@click.option("--model-out", type=click.Path(dir_okay=False), default=None, help="Also save the final weights (.safetensors).")
@click.option("--eval", "eval_dataset", default=None, metavar="DATASET",
              help="Score the final model on this dataset (a name or path) instead of a 10 % split of DATASET; the "
                   "private sample T is then drawn from all of DATASET.")
@click.option("--eval-part", type=click.Choice(["eval", "test", "all"]), default="eval", show_default=True,
              help="Part of the --eval dataset: its T_e (the --split-seed 90/10 split's 10 %), its test set, or all.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
@click.pass_context
def prove_command(ctx: click.Context, dataset: str, setting: str, labels: str | None, sigma: float, fraction: float,
                  clip: bool, epochs: int, batch_size: int | None, lr: float, widths: str, hidden: int, seed: int,
                  noise_seed: int | None, shuffle_seed: int | None, split_seed: int, init_path: str | None,
                  init_seed: int, device: str, checkpoint_every: int, threads: int, key_out: str | None,
                  key_file: str | None, verify_key_out: str | None, out: str, overwrite: bool, model_out: str | None,
                  eval_dataset: str | None, eval_part: str, as_json: bool, progress: bool) -> None:
    """Train on a private sample T of DATASET and write a proof bundle that shares O(T) at --sigma.

    --sigma 0 shares T itself. O(T) is a keyed release: its noise comes from a secret 256-bit key
    (fresh unless --key-file is given; kept only in --key-out), the sigma and the sample id; the
    bundle records the key's identifier, never the key, and the release manifest (release.json)
    authenticated under the owner's verification key (--verify-key-out). It records the shuffle seed, the init seed
    and the thread count. A --checkpoint-every larger than the number of steps is lowered to it.
    --device cpu gives a bit-exact replay. Exit status: 0 written, 3 error.
    """
    from pudlab.data.sources import load_source
    from pudlab.io import save_weights
    from pudlab.model import ModelConfig, build_model
    from pudlab.obfuscation import ObfuscationParams, record_key_use, release, release_manifest
    from pudlab.pol.manifest import NoiseClaim
    from pudlab.pol.prover import prove
    from pudlab.release_auth import VerificationKey
    from pudlab.sampling import SamplingSetting, parse_labels
    from pudlab.train.run import data_split, make_recipe, resolve_initial_weights, training_set
    from pudlab.train.trainer import TrainConfig, default_batch_size, evaluate, resolve_device

    source = load_source(dataset, _data_dir(ctx))
    eval_source = load_source(eval_dataset, _data_dir(ctx)) if eval_dataset is not None else None
    split = data_split(source, split_seed=split_seed, eval_source=eval_source, eval_part=eval_part)
    parsed = SamplingSetting.parse(setting)
    explicit = parse_labels(labels, source.num_classes) if labels else None
    recipe = make_recipe(parsed, source.num_classes, seed=seed, labels=explicit)
    if noise_seed is not None:
        raise PudlabError("--noise-seed does not apply to pol prove: O(T) is keyed by a secret release key "
                          "(--key-file / --key-out)")
    key = _release_key(key_file, key_out)
    if verify_key_out and Path(verify_key_out).exists():
        raise PudlabError(f"--verify-key-out {verify_key_out}: already exists; a key file is never overwritten")
    private, _ = training_set(split, recipe, ObfuscationParams(0.0))
    shared = release(private, sigma=sigma, key=key, fraction=fraction, clip=clip)
    owner_manifest = release_manifest(shared, sigma=sigma, fraction=fraction, clip=clip, key=key,
                                      recipe={"setting": str(parsed), "labels": list(recipe.labels)})
    model_config = ModelConfig(source.sample_shape, parse_widths(widths), hidden, source.num_classes)
    train_config = TrainConfig(epochs=epochs, batch_size=batch_size or default_batch_size(source.sample_shape), lr=lr,
                               shuffle_seed=seed if shuffle_seed is None else shuffle_seed)
    initial = resolve_initial_weights(model_config, init_seed=init_seed, init_path=init_path)
    result = prove(private, shared, model_config, train_config, initial_weights=initial,
                   init_seed=None if init_path else init_seed, noise=NoiseClaim(sigma, fraction, clip, key.key_id),
                   checkpoint_every=checkpoint_every, out=out, device=str(resolve_device(device)), threads=threads,
                   overwrite=overwrite, progress=progress, release_manifest=owner_manifest,
                   provenance={"dataset": source.name, "description": source.description, "setting": str(parsed),
                               "labels": list(recipe.labels), "samples": len(private)})
    if key_out:
        key.write(key_out)
    if verify_key_out:
        VerificationKey.of(key).write(verify_key_out)
    key_path = key_out or key_file
    if key_path:
        record_key_use(key_path, [sigma])
    if result.checkpoint_every != checkpoint_every:
        click.echo(f"notice: --checkpoint-every {checkpoint_every} is more than the {result.num_steps} steps; "
                   f"checkpointed every {result.checkpoint_every}", err=True)
    _, accuracy = evaluate(build_model(model_config, result.final_weights), split.eval)
    if model_out:
        save_weights(model_out, result.final_weights, {"format": "pudlab.weights/1"})
    summary = {"bundle": str(result.path), "bundle_sha256": result.manifest_sha256, "samples": len(private),
               "sigma": sigma, "key_id": key.key_id, "steps": result.num_steps,
               "checkpoints": result.num_checkpoints, "checkpoint_every": result.checkpoint_every,
               "final_weights_sha256": result.final_weights_sha256, "eval_accuracy": accuracy,
               "eval_on": f"{eval_dataset} ({eval_part})" if eval_dataset else "T_e",
               "seconds": result.seconds}
    if as_json:
        print_json(summary)
    else:
        click.echo(f"{result.path}: proof of {result.num_steps} steps on {len(private)} samples, "
                   f"{result.num_checkpoints} checkpoints, shares O(T) at sigma {sigma:g}; accuracy on "
                   f"{summary['eval_on']} {accuracy:.4f}; bundle sha256 {result.manifest_sha256[:16]}; {result.seconds:.1f} s")


def _release_key(key_file: str | None, key_out: str | None):
    """The release key of O(T): read from --key-file (a warning if others can read it), else fresh (kept in
    --key-out when asked)."""
    from pudlab.obfuscation import ReleaseKey, key_file_exposure

    if key_file and key_out:
        raise PudlabError("--key-out writes a fresh key; with --key-file the key already has a file")
    if key_out and Path(key_out).exists():
        raise PudlabError(f"--key-out {key_out}: already exists; a release key file is never overwritten")
    if not key_file:
        return ReleaseKey.generate()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        key = ReleaseKey.read(key_file)
    _warn_exposed(key_file_exposure(key_file))
    return key


def _warn_exposed(message: str | None) -> None:
    if message:
        click.echo(f"warning: {message}", err=True)


# ---------------------------------------------------------------------------------------- owner-key
@pol_group.command("owner-key", epilog="Exit status: 0 written, 3 error.")
@click.argument("key_file", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="Verification key file to write (0600).")
def owner_key_command(key_file: str, out: str) -> None:
    """Write the owner's verification key of the release key KEY_FILE, for verifiers.

    A verifier with it authenticates the owner's release manifests (sigma, R, clip, hashes of O(T))
    and cannot regenerate the noise. Give it to verifiers only: whoever holds it can also
    authenticate (it is a MAC key), so a prover must never get it.
    """
    from pudlab.release_auth import VerificationKey

    key = _release_key(key_file, None)
    VerificationKey.of(key).write(out)
    click.echo(f"{out}: verification key of release key {key.key_id} (mode 0600; for verifiers only)")


# ---------------------------------------------------------------------------------------- verify
def _threshold(text: str) -> float | None:
    if text.strip().lower() == "auto":
        return None
    try:
        return float(text)
    except ValueError as exc:
        raise click.BadParameter(f"--threshold: expected 'auto' or a number, got {text!r}") from exc


def _verify_policy(init: str, max_lr: float | None, max_update_ratio: float | None,
                   reject_update_ratio: float | None) -> VerifyPolicy:
    """The verifier's policy from the command line (a --max-update-ratio above the default reject bound
    raises that bound with it)."""
    from dataclasses import replace

    from pudlab.pol.policy import VerifyPolicy

    policy = VerifyPolicy(init=init)
    if max_lr is not None:
        policy = replace(policy, max_lr=max_lr)
    if max_update_ratio is not None:
        policy = replace(policy, max_update_ratio=max_update_ratio,
                         reject_update_ratio=max(policy.reject_update_ratio, max_update_ratio))
    if reject_update_ratio is not None:
        policy = replace(policy, reject_update_ratio=reject_update_ratio)
    return policy


@pol_group.command("verify", epilog=EXIT_CODES_HELP)
@click.argument("bundle", type=click.Path(exists=True))
@click.option("--owner-key", type=click.Path(dir_okay=False, exists=True), default=None,
              help="The data owner's verification key (`pol owner-key`): sigma, R and clip come from the owner's "
                   "authenticated release, and O(T) must be that release.")
@click.option("--sigma", "known_sigma", type=float, default=None,
              help="The sigma of O(T) as you know it (instead of --owner-key); with --fraction and --clip.")
@click.option("--fraction", "known_fraction", type=float, default=1.0, show_default=True, help="R, with --sigma.")
@click.option("--clip", "known_clip", is_flag=True, help="O(T) was clipped, with --sigma.")
@click.option("--random-segments", type=int, default=None,
              help="Segments drawn at random from the verifier's secret seed [default: 8].")
@click.option("--verifier-seed", type=int, default=None,
              help="The verifier's secret seed (segment draws, calibration noise) [default: fresh, printed].")
@click.option("--top-q", "top_q", type=int, default=1, show_default=True,
              help="Also replay the segments with the largest updates, per epoch (and the one before each); 0 = all.")
@click.option("--max-drift-share", type=float, default=None,
              help="Undecidable when the accepted drift reaches this share of ||W_T - W_0|| [default: 0.5].")
@click.option("--no-drift-limit", is_flag=True, help="Never answer undecidable (accept whatever the tolerance).")
@click.option("--threshold", "threshold_text", default="auto", show_default=True,
              help="auto (0 at sigma 0, else re-obfuscation spread x --multiplier) or a fixed F-norm.")
@click.option("--multiplier", type=float, default=None, help="auto at sigma > 0: multiplier of the spread [default: 2.5].")
@click.option("--calibration-replays", type=int, default=None,
              help="auto at sigma > 0: fresh re-obfuscations replayed per segment [default: 2].")
@click.option("--tolerance-band", type=float, default=None,
              help="auto at sigma > 0: a distance above the threshold, up to this many times it, is undecidable "
                   "(the threshold is an estimate) [default: 1.5; 1: none].")
@click.option("--threads", type=int, default=None, help="Replay threads [default: the prover's recorded count].")
@click.option("--no-schedule-check", is_flag=True, help="Do not require the batches to follow the declared shuffle seed.")
@click.option("--max-sigma", type=float, default=None, help="Reject a release noisier than this.")
@click.option("--init-policy", type=click.Choice(["seeded", "seeded-or-ks", "any"]), default="seeded",
              show_default=True, help="seeded: W_0 must be redrawn from its declared seed; seeded-or-ks: unseeded W_0 "
                                      "must pass a fresh-draw test (zero biases, Glorot support, KS per kernel); "
                                      "any: accept unseeded W_0 unchecked (the verdict says so).")
@click.option("--max-lr", type=float, default=None, help="Policy: largest lr a bundle may claim [default: 0.01].")
@click.option("--max-update-ratio", type=float, default=None,
              help="Policy: replayed updates above this many times the claimed ones on average: undecidable "
                   "[default: 1.1].")
@click.option("--reject-update-ratio", type=float, default=None,
              help="Policy: replayed updates above this many times the claimed ones on average: reject, a "
                   "falsified lr [default: 1.2].")
@click.option("--moment-multiplier", type=float, default=None,
              help="auto at sigma > 0: multiplier of the spread for Adam's moments [default: 10].")
@click.option("--model", "model_path", type=click.Path(exists=True), default=None,
              help="Also require the final checkpoint to be this model (.safetensors or run dir).")
@click.option("--device", default="cpu", show_default=True, help="Replay device.")
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
@click.option("--progress/--no-progress", default=False, help="Show a progress bar.")
@click.pass_context
def verify_command(ctx: click.Context, bundle: str, owner_key: str | None, known_sigma: float | None,
                   known_fraction: float, known_clip: bool, random_segments: int | None, verifier_seed: int | None,
                   top_q: int, max_drift_share: float | None, no_drift_limit: bool, threshold_text: str,
                   multiplier: float | None, calibration_replays: int | None, tolerance_band: float | None,
                   threads: int | None,
                   no_schedule_check: bool, max_sigma: float | None, init_policy: str, max_lr: float | None,
                   max_update_ratio: float | None, reject_update_ratio: float | None, moment_multiplier: float | None, model_path: str | None,
                   device: str, as_json: bool, progress: bool) -> None:
    """Verify a proof BUNDLE: exit 0 accept, 1 reject, 2 malformed or tampered, 3 other error, 4 undecidable.

    Give the data owner's --owner-key (or the --sigma you know): without either, a bundle that shares
    noisy data is rejected, since its sigma -- and so the replay tolerance -- would be the prover's claim.
    """
    from pudlab.pol.manifest import NoiseClaim
    from pudlab.pol.verifier import VerifyOptions, verify_bundle
    from pudlab.release_auth import VerificationKey, verification_key_exposure

    policy = _verify_policy(init_policy, max_lr, max_update_ratio, reject_update_ratio)
    expected = None
    if model_path:
        from pudlab.io import load_weights, weights_sha256

        expected = weights_sha256(load_weights(model_path))
    key = None
    if owner_key:
        key = VerificationKey.read(owner_key)
        _warn_exposed(verification_key_exposure(owner_key))
    defaults = VerifyOptions()
    options = VerifyOptions(
        top_q=top_q, threshold=_threshold(threshold_text), owner_key=key,
        release_noise=None if known_sigma is None else NoiseClaim(known_sigma, known_fraction, known_clip),
        random_segments=defaults.random_segments if random_segments is None else random_segments,
        verifier_seed=verifier_seed,
        max_drift_share=None if no_drift_limit else (defaults.max_drift_share if max_drift_share is None
                                                     else max_drift_share),
        multiplier=defaults.multiplier if multiplier is None else multiplier,
        calibration_replays=defaults.calibration_replays if calibration_replays is None else calibration_replays,
        tolerance_band=defaults.tolerance_band if tolerance_band is None else tolerance_band,
        moment_multiplier=defaults.moment_multiplier if moment_multiplier is None else moment_multiplier,
        threads=threads, check_schedule=not no_schedule_check,
        max_sigma=max_sigma, expected_model_sha256=expected, policy=policy, device=device)
    try:
        verdict = verify_bundle(bundle, options, progress=progress)
    except BundleError as exc:
        if as_json:
            print_json({"kind": "pudlab.pol_verdict", "verdict": "malformed", "exit_code": EXIT_MALFORMED,
                        "reason": str(exc), "bundle": bundle})
        raise
    if as_json:
        print_json(verdict.to_dict())
    else:
        _print_verdict(bundle, verdict)
    ctx.exit(verdict.exit_code)


def _print_verdict(bundle: str, verdict) -> None:
    """The verdict as text: checks, the challenge, every replayed segment, then the decision line."""
    click.echo(f"bundle {bundle} (sha256 {verdict.bundle_sha256[:16]}), sigma {verdict.sigma:g}, "
               f"threshold {verdict.threshold_method}, replay threads {verdict.replay_threads}")
    for check in verdict.checks:
        click.echo(f"  check {check.name:15} {'ok  ' if check.passed else 'FAIL'} {check.detail}")
    challenge = verdict.challenge
    if challenge is not None and verdict.segments:
        odds = ", ".join(f"f={share}: {p:.3g}" for share, p in challenge.catch_probability.items())
        click.echo(f"  challenge: verifier seed {challenge.seed}, {len(challenge.drawn)} of {challenge.num_segments} "
                   f"segments drawn at random {list(challenge.drawn)} after the trajectory root "
                   f"{challenge.trajectory_root[:16]}; a faked share f is caught with probability >= {odds}")
    if verdict.segments:
        click.echo(f"  {'segment':>7} {'role':>11} {'epoch':>5} {'steps':>11} {'update':>10} {'distance':>12} "
                   f"{'threshold':>12} {'m dist/thr':>10} {'v dist/thr':>10} {'ratio':>6}")
    for seg in verdict.segments:
        moments = [f"{d / t:.3g}" if t > 0 else ("0" if d == 0 else "inf")
                   for d, t in zip(seg.moment_distances, seg.moment_thresholds, strict=True)]
        click.echo(f"  {seg.index:>7} {seg.role:>11} {seg.epoch:>5} {f'{seg.start_step}-{seg.end_step}':>11} "
                   f"{seg.update_norm:>10.4g} {seg.distance:>12.6g} {seg.threshold:>12.6g} {moments[0]:>10} "
                   f"{moments[1]:>10} {seg.update_ratio:>6.3g} {_segment_status(seg)}")
    click.echo(f"{verdict.decision.upper()}: {verdict.reason}")


def _segment_status(segment: SegmentResult) -> str:
    if not segment.passed:
        return f"FAIL: {segment.failure}"
    if segment.distance_undecided:
        return f"undecided: distance above the threshold, within {segment.tolerance_band:g}x it"
    return "ok"


# ---------------------------------------------------------------------------------------- evaluate
@pol_group.command("evaluate", epilog="Exit status: 0 done, 3 error.")
@click.argument("dataset", required=False, default="mnist-5k")
@click.option("--sigmas", default="0,0.05,0.1,0.3,0.6,1.0", show_default=True, help="Comma-separated sigmas.")
@click.option("--trials", type=int, default=3, show_default=True, help="Independent (T_i, T_j) pairs per sigma.")
@click.option("--setting", default="S-1-1-0.5", show_default=True, help="S-X-Y-Z of T_i and of the disjoint T_j.")
@click.option("--epochs", type=int, default=3, show_default=True, help="Training epochs per prover.")
@click.option("--batch-size", type=int, default=None, help="Batch size [default: 128 one-channel, 64 colour].")
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Adam learning rate, per step.")
@click.option("--widths", default="8,16,32", show_default=True, help="Conv widths of the three blocks.")
@click.option("--hidden", type=int, default=128, show_default=True, help="Units of the hidden dense layer.")
@click.option("--checkpoint-every", type=int, default=6, show_default=True, help="K: steps between checkpoints.")
@click.option("--top-q", type=int, default=1, show_default=True, help="Segments replayed per epoch (0 = all).")
@click.option("--multiplier", type=float, default=None, help="auto threshold multiplier [default: 2.5].")
@click.option("--calibration-replays", type=int, default=None, help="Re-obfuscations per segment [default: 2].")
@click.option("--fraction", type=float, default=1.0, show_default=True, help="R: fraction of samples obfuscated.")
@click.option("--clip", is_flag=True, help="Clip O(T) to [0, 1].")
@click.option("--seed", type=int, default=0, show_default=True, help="Root seed of draws, noise and batch orders.")
@click.option("--split-seed", type=int, default=0, show_default=True, help="Seed of the 90/10 T_t / T_e split.")
@click.option("--init-seed", type=int, default=0, show_default=True, help="Seed of the shared initial weights.")
@click.option("--threads", type=int, default=1, show_default=True, help="Intra-op CPU threads per worker.")
@click.option("--workers", type=int, default=None,
              help="Worker processes running jobs side by side [default: min(2, CPU count)]; results do not depend on it.")
@click.option("--no-attacks", is_flag=True, help="Only honest vs spoof (skip thieves and tampers).")
@click.option("--attack-trials", type=int, default=None,
              help="Trials that also run every thief and tamper [default: all of --trials].")
@click.option("--out", type=click.Path(file_okay=False), default="pol-evaluation", show_default=True,
              help="Directory of pol_evaluation.{json,csv,png,svg}.")
@click.option("--keep-bundles", is_flag=True, help="Keep every bundle under OUT/bundles.")
@click.option("--json", "as_json", is_flag=True, help="Print the result JSON.")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
@click.pass_context
def evaluate_command(ctx: click.Context, dataset: str, sigmas: str, trials: int, setting: str, epochs: int,
                     batch_size: int | None, lr: float, widths: str, hidden: int, checkpoint_every: int, top_q: int,
                     multiplier: float | None, calibration_replays: int | None, fraction: float, clip: bool,
                     seed: int, split_seed: int, init_seed: int, threads: int, workers: int | None,
                     no_attacks: bool, attack_trials: int | None, out: str,
                     keep_bundles: bool, as_json: bool, progress: bool) -> None:
    """Honest provers vs spoofers, thieves and tampered bundles on DATASET [mnist-5k], over sigma."""
    import os

    from pudlab.data.sources import load_source
    from pudlab.pol.evaluation import EvaluationConfig, evaluate_detection
    from pudlab.pol.evaluation_results import format_attack_table, format_table
    from pudlab.pol.verifier import DEFAULT_CALIBRATION_REPLAYS, DEFAULT_MULTIPLIER
    from pudlab.report.pol_figures import plot_evaluation

    config = EvaluationConfig(
        sigmas=parse_floats(sigmas, "--sigmas"), trials=trials, setting=setting, epochs=epochs, batch_size=batch_size,
        lr=lr, widths=parse_widths(widths), hidden=hidden, checkpoint_every=checkpoint_every, top_q=top_q,
        multiplier=DEFAULT_MULTIPLIER if multiplier is None else multiplier,
        calibration_replays=DEFAULT_CALIBRATION_REPLAYS if calibration_replays is None else calibration_replays,
        fraction=fraction, clip=clip, seed=seed, split_seed=split_seed, init_seed=init_seed, threads=threads,
        attacks=not no_attacks, attack_trials=attack_trials)
    source = load_source(dataset, _data_dir(ctx))
    log = None if as_json else click.echo
    workers = min(2, os.cpu_count() or 1) if workers is None else max(1, workers)
    report = evaluate_detection(source, config, out, workers=workers, keep_bundles=keep_bundles, progress=progress,
                                log=log)
    plot_evaluation(report.rows, f"{out}/pol_evaluation.png", f"{out}/pol_evaluation.svg",
                    title=f"PoL on {source.description}", attacks=report.attacks)
    if as_json:
        print_json(report.to_dict())
        return
    click.echo(format_table(report.rows))
    if report.attacks:
        click.echo(format_attack_table(report.attacks))
    for attack in report.unexpected_attacks:
        click.echo(f"  sigma {attack.sigma:g}: {attack.attack} gave exit {attack.status} "
                   f"(expected {attack.expected_status}): {attack.reason}")
    click.echo(f"threshold: {report.threshold_method}")
    click.echo(f"wrote {out}/pol_evaluation.{{json,csv,png,svg}} in {report.seconds:.0f} s")
