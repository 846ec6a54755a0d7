"""PUD inputs from a sweep store: Utility and Distinguishability from Exp-3, Privacy from the attacks.

For every sigma of the stored Exp-3 sweep on a dataset:

* accuracy: A(W_o,3,1), the model trained on O(T_3,1) (mean over repeats);
* Delta (Eq. 4): |D(W_r,3,1, W_o,3,1) - D(W_r,3,1, W_o,3,2)|, i.e. D_3,1 (the raw dataset vs its own
  obfuscated version) against D_3,2 (vs an obfuscated *different* draw of the same distribution),
  both at the same sigma; with repeats, the per-repeat values of D_3,1 (honest) and D_3,2 (spoof)
  go in too, and Distinguishability becomes their separability;
* the Delta floor: the shuffle-seed noise floor of W_r,3,1 (a Delta below it carries no signal);
* privacy: ``pudlab privacy`` on the same dataset at the same sigmas, computed once and kept in the
  store as ``privacy/<dataset>.json``.

The result is the ``pudlab pud --from-json`` format (see docs/privacy.md).
"""

from __future__ import annotations

from pathlib import Path

from pudlab.errors import PudlabError, StoreError
from pudlab.experiments.series import series_table
from pudlab.experiments.store import Store
from pudlab.io import read_json, replace_non_finite, write_json
from pudlab.privacy.report import PrivacyReport, privacy_report

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


def stored_privacy(store: Store, dataset: str, sigmas: list[float], *, data_dir: str | None = None,
                   compute: bool = True, progress: bool = False) -> PrivacyReport | None:
    """The privacy report of ``dataset`` at ``sigmas``: from the store, else computed and saved
    (None when it is not stored and ``compute`` is False).

    A stored report at other sigmas, or one that does not read as a report, is computed again.
    Non-finite numbers are stored as null, so an infinite epsilon reads back as None.
    """
    path = privacy_path(store, dataset)
    if path.exists():
        try:
            report = PrivacyReport.from_dict(read_json(path), where=str(path))
        except PudlabError:
            report = None
        if report is not None and sorted(entry.sigma for entry in report.entries) == sorted(sigmas):
            return report
    if not compute:
        return None
    from pudlab.data.sources import load_source

    source = load_source(dataset, data_dir)
    sources = {row["name"]: row for row in store.sources()}
    if dataset in sources and sources[dataset]["fingerprint"] != source.fingerprint:
        raise StoreError(f"{dataset}: its files changed since the sweep (fingerprint differs)")
    data = replace_non_finite(privacy_report(source, sigmas, progress=progress).to_dict())
    write_json(path, data)
    return PrivacyReport.from_dict(data, where=str(path))


__all__ = ["EXPERIMENT", "privacy_path", "pud_inputs", "store_datasets", "stored_privacy"]
