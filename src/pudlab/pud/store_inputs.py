"""PUD inputs from a sweep store: Utility and Distinguishability from Exp-3, Privacy from the attacks.

For every sigma of the stored Exp-3 sweep on a dataset:

* accuracy: A(W_o,3,1), the model trained on O(T_3,1) (mean over repeats);
* Delta (Eq. 4): |D(W_r,3,1, W_o,3,1) - D(W_r,3,1, W_o,3,2)|, i.e. D_3,1 (the raw dataset vs its own
  obfuscated version) against D_3,2 (vs an obfuscated *different* draw of the same distribution),
  both at the same sigma; with repeats, the per-repeat values of D_3,1 (honest) and D_3,2 (spoof)
  go in too, and Distinguishability becomes their separability;
* the Delta floor: the shuffle-seed noise floor of W_r,3,1 (a Delta below it carries no signal);
* privacy: ``pudlab privacy`` on the same dataset at the same sigmas, computed once and kept in the
  store as ``privacy/<dataset>.json``, one sigma at a time (an interrupted computation resumes).

The result is the ``pudlab pud --from-json`` format (see docs/privacy.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from pudlab.errors import PudlabError, StoreError
from pudlab.experiments.series import series_table
from pudlab.experiments.store import Store
from pudlab.io import read_json, replace_non_finite, write_json
from pudlab.privacy.report import PrivacyConfig, PrivacyReport, privacy_report

EXPERIMENT = "exp3"
SAME, OTHER, FLOOR = "D_3,1", "D_3,2", "floor[Wr31]"


def store_datasets(store: Store) -> list[str]:
    """Datasets with an Exp-3 plan in the store."""
    return sorted(plan["dataset"] for plan in store.plans() if plan["experiment"] == EXPERIMENT)


def pud_inputs(store: Store, dataset: str) -> dict:
    """Per-sigma accuracy, Delta (and per-repeat distances) of ``dataset``'s Exp-3 sweep."""
    plan_id = f"{EXPERIMENT}@{dataset}"
    if dataset not in store_datasets(store):
        raise StoreError(f"{store.root}: no {EXPERIMENT} sweep on {dataset!r}; run `pudlab run {EXPERIMENT} "
                         f"--dataset {dataset} --store {store.root}` (datasets with one: {store_datasets(store)})")
    table = series_table(store, plan_id)
    if SAME not in table or OTHER not in table:
        raise StoreError(f"{store.root}: {plan_id} has no {SAME}/{OTHER} series yet (are its jobs done?)")
    sigmas = table[SAME]["x"]
    accuracy_by_sigma: dict[float, list[float]] = {}
    for role in store.roles(plan_id):
        if role.model == "Wo31" and role.stream == "model":
            value = store.final_accuracy(role.job)
            if value is not None:
                accuracy_by_sigma.setdefault(role.sigma, []).append(value)
    missing = [s for s in sigmas if s not in accuracy_by_sigma]
    if missing:
        raise StoreError(f"{store.root}: {plan_id}: no finished W_o,3,1 at sigma {missing}")
    accuracy = [sum(accuracy_by_sigma[s]) / len(accuracy_by_sigma[s]) for s in sigmas]
    same, other = table[SAME], table[OTHER]
    deltas = [abs(b - a) for a, b in zip(same["mean"], other["mean"], strict=True)]
    data: dict = {"title": f"{dataset}: Exp-3 sweep", "sigmas": sigmas, "accuracy": accuracy, "delta": deltas,
                  "source": f"{store.root} {plan_id}"}
    if any(n > 1 for n in same["n"]):
        data["honest_distances"] = same["values"]
        data["spoof_distances"] = other["values"]
    if FLOOR in table:
        data["noise_floor"] = table[FLOOR]["mean"][0]  # for the reader; the Delta floor stays 0
    return data


def privacy_path(store: Store, dataset: str) -> Path:
    """Where the store keeps ``dataset``'s privacy report."""
    return store.root / "privacy" / f"{Path(dataset).stem}.json"


def _stored_report(path: Path, config: PrivacyConfig | None) -> PrivacyReport | None:
    """The report kept at ``path`` when it reads as one and was measured with ``config`` (any when None)."""
    if not path.exists():
        return None
    try:
        report = PrivacyReport.from_dict(read_json(path), where=str(path))
    except PudlabError:
        return None
    if config is not None and report.config != config:
        return None
    return report


def stored_privacy(store: Store, dataset: str, sigmas: list[float], *, data_dir: str | None = None,
                   config: PrivacyConfig | None = None, compute: bool = True, progress: bool = False,
                   log: Callable[[str], None] | None = None) -> PrivacyReport | None:
    """The privacy report of ``dataset`` at ``sigmas``: from the store, else computed and saved
    (None when it is not complete and ``compute`` is False).

    Each sigma is saved as soon as it is done, so an interrupted computation resumes at the first
    missing sigma (a kept sigma is reused only when ``config``, default :class:`PrivacyConfig`,
    matches; per-sigma results do not depend on the other sigmas). ``log`` gets one line per
    sigma with the measured time and an estimate of what is left. Non-finite numbers are stored
    as null, so an infinite epsilon reads back as None.
    """
    path = privacy_path(store, dataset)
    kept = _stored_report(path, config)
    done = {entry.sigma: entry for entry in kept.entries} if kept is not None else {}
    if kept is not None and all(sigma in done for sigma in sigmas):
        return replace(kept, entries=[done[sigma] for sigma in sigmas])
    if not compute:
        return None
    from pudlab.data.sources import load_source

    source = load_source(dataset, data_dir)
    sources = {row["name"]: row for row in store.sources()}
    if dataset in sources and sources[dataset]["fingerprint"] != source.fingerprint:
        raise StoreError(f"{dataset}: its files changed since the sweep (fingerprint differs)")
    config = config or PrivacyConfig()
    missing = [sigma for sigma in sigmas if sigma not in done]
    seconds = [sum(entry.seconds.values()) for entry in done.values()]
    for position, sigma in enumerate(missing):
        measured = privacy_report(source, [sigma], config, progress=progress)
        done[sigma] = measured.entries[0]
        seconds.append(sum(measured.entries[0].seconds.values()))
        every = [done[s] for s in sorted(done)]
        data = replace_non_finite(replace(measured, entries=every).to_dict())
        write_json(path, data)  # atomic: what is on disk is always a whole report
        if log is not None:
            left = len(missing) - position - 1
            estimate = f"; about {left * sum(seconds) / len(seconds) / 60:.1f} min left for {left} sigma(s)" if left else ""
            log(f"privacy at sigma {sigma:g}: {seconds[-1]:.0f} s (kept in {path}){estimate}")
    report = PrivacyReport.from_dict(read_json(path), where=str(path))
    by_sigma = {entry.sigma: entry for entry in report.entries}
    return replace(report, entries=[by_sigma[sigma] for sigma in sigmas])


def measured_seconds_per_sigma(store: Store, dataset: str, config: PrivacyConfig | None = None) -> float | None:
    """Mean measured wall time of one sigma's attacks kept for ``dataset`` with ``config`` (None: none kept)."""
    kept = _stored_report(privacy_path(store, dataset), config)
    if kept is None or not kept.entries:
        return None
    return sum(sum(entry.seconds.values()) for entry in kept.entries) / len(kept.entries)


__all__ = ["EXPERIMENT", "measured_seconds_per_sigma", "privacy_path", "pud_inputs", "store_datasets",
           "stored_privacy"]
