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

import json
from pathlib import Path

from .errors import StoreError
from .experiments.series import series_table
from .experiments.store import Store
from .storage import read_json, write_json

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
    return store.root / "privacy" / f"{Path(dataset).stem}.json"


def stored_privacy(store: Store, dataset: str, sigmas: list[float], *, data_dir: str | None = None,
                   compute: bool = True, progress: bool = False) -> dict | None:
    """The privacy report of ``dataset`` at ``sigmas``: from the store, else computed and saved."""
    path = privacy_path(store, dataset)
    if path.exists():
        report = read_json(path)
        if sorted(entry["sigma"] for entry in report.get("sigmas", [])) == sorted(sigmas):
            return report
    if not compute:
        return None
    from .data.sources import load_source
    from .privacy import privacy_report
    from .privacy_cli import _finite

    source = load_source(dataset, data_dir)
    sources = {row["name"]: row for row in store.sources()}
    if dataset in sources and sources[dataset]["fingerprint"] != source.fingerprint:
        raise StoreError(f"{dataset}: its files changed since the sweep (fingerprint differs)")
    report = _finite(privacy_report(source, sigmas, progress=progress))
    write_json(path, report)
    return json.loads(json.dumps(report))
