"""The experiment sections of the report: summary, claims, evidence, series, configuration, environment."""

from __future__ import annotations

import json
import time
from collections import defaultdict

from pudlab.experiments.claims import claim_summary, claim_verdict, run_warning
from pudlab.experiments.series import configuration_text, overridden_settings, series_table
from pudlab.experiments.spec import parse_experiment
from pudlab.experiments.store import Store
from pudlab.report.glossary import SETTING_NOTES
from pudlab.report.render import Block, fmt, mean_std

LAYER_KIND = "layer_distance"
ENVIRONMENT_KEYS = ("pudlab", "torch", "numpy", "python", "platform", "device", "device_name", "torch_threads",
                    "precision", "trainer")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _data_text(source: dict, preset: dict) -> str:
    """A source as this run used it: T_t and T_e sizes after the split and any cut."""
    total = int(source["train_size"])
    eval_size = int(round(total * float(preset.get("eval_fraction", 0.1))))
    train = total - eval_size
    cut = int(preset.get("max_train_size") or 0)
    used = (f"T_t {cut:,} of {train:,} images" if 0 < cut < train else f"T_t {train:,} images") + f", T_e {eval_size:,}"
    return f"{source['name']} ({source['description']}; {used}; SHA-256 {source['fingerprint'][:12]})"


def summary_blocks(store: Store, claims: dict[str, list]) -> list[Block]:
    """The run's warning line (if any), what was run (the configuration that actually ran, every override
    marked), on what data, how long; then the claims table with one line of evidence each."""
    plans = store.plans()
    counts = store.status_counts()
    total = sum(counts.values())
    configurations = sorted({f"Preset {plan['preset']['name']} as run: {configuration_text(plan['preset'])}"
                             for plan in plans})
    experiments = sorted({plan["experiment"] for plan in plans})
    preset = plans[0]["preset"] if plans else {}
    data = [_data_text(source, preset) for source in store.sources()]
    timings = store.timings()
    wall = sum(t["seconds"] for t in timings)
    devices = sorted({str(json.loads(t["detail"]).get("device")) for t in timings if t["detail"]})
    unfinished = counts["pending"] + counts["running"]
    ran = (f"{'; '.join(configurations) or 'No preset'}. Experiments {', '.join(experiments) or '-'} on "
           f"{'; '.join(data) or 'no dataset'}. {counts['done']} of {total} trainings done"
           + (f", {unfinished} not finished" if unfinished else "") + (f", {counts['failed']} failed" if counts["failed"] else "")
           + (f"; {_duration(wall)} of wall time over {len(timings)} command(s) on {', '.join(devices)}." if timings else "."))
    warning = run_warning(claims)
    blocks = [Block("text", warning, css="warning")] if warning else []
    blocks.append(Block("text", ran, css="summary"))
    for dataset, results in claims.items():
        tally = ", ".join(f"{sum(claim_verdict(r) == v for r in results)} {v}"
                          for v in dict.fromkeys(claim_verdict(r) for r in results))
        blocks.append(Block("heading", f"Claims on {dataset}: {tally}", 2, anchor=f"claims-{dataset}"))
        rows = [[result.number, result.claim, claim_verdict(result), claim_summary(result)] for result in results]
        blocks.append(Block("table", (["#", "claim", "verdict", "evidence"], rows), css="claims"))
    return blocks


def _flat_evidence(evidence: dict, prefix: str = "") -> list[tuple[str, str]]:
    rows = []
    for key, value in evidence.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows += _flat_evidence(value, f"{name} / ")
        elif isinstance(value, (list, tuple)):
            rows.append((name, ", ".join(fmt(v) for v in value)))
        else:
            rows.append((name, fmt(value)))
    return rows


def evidence_blocks(claims: dict[str, list]) -> list[Block]:
    """Per claim: its criterion and the numbers that decided it."""
    blocks = [Block("heading", "Evidence per claim")]
    for dataset, results in claims.items():
        for result in results:
            title = f"Claim {result.number} on {dataset}: {claim_verdict(result)}"
            blocks.append(Block("heading", title, 3, anchor=f"claim-{result.number}-{dataset}"))
            blocks.append(Block("text", f"{result.claim} Criterion: {result.criterion}."))
            rows = [list(row) for row in _flat_evidence(result.evidence or {})]
            if rows:
                blocks.append(Block("details", [Block("table", (["quantity", "value"], rows))],
                                    title=f"The numbers that decided claim {result.number} ({len(rows)})"))
    return blocks


def wide_series(table: dict[str, dict]) -> tuple[list[str], list[list]]:
    """A plan's series as one row per x and one column per series (``mean ± std``), plus n."""
    names = list(table)
    xs = sorted({x for entry in table.values() for x in entry["x"]})
    rows = []
    for x in xs:
        cells, ns = [], set()
        for name in names:
            entry = table[name]
            if x in entry["x"]:
                index = entry["x"].index(x)
                cells.append(mean_std(entry["mean"][index], entry["std"][index], entry["n"][index]))
                ns.add(entry["n"][index])
            else:
                cells.append("–")
        n_text = "–" if not ns else (str(min(ns)) if len(ns) == 1 else f"{min(ns)}–{max(ns)}")
        rows.append([f"{x:g}", *cells, n_text])
    return names, rows


def layer_table(table: dict[str, dict]) -> tuple[list[str], list[list]]:
    """Per-layer distances ``<series>[<layer>]`` as one row per (series, sigma) and one column per layer."""
    grouped: dict[str, dict[str, dict]] = defaultdict(dict)
    for name, entry in table.items():
        base, _, layer = name.partition("[")
        grouped[base][layer.rstrip("]")] = entry
    layers = list(dict.fromkeys(layer for by_layer in grouped.values() for layer in by_layer))
    rows = []
    for base, by_layer in grouped.items():
        for x in sorted({x for entry in by_layer.values() for x in entry["x"]}):
            cells = []
            for layer in layers:
                found = by_layer.get(layer)
                if found is None or x not in found["x"]:
                    cells.append("–")
                    continue
                index = found["x"].index(x)
                cells.append(mean_std(found["mean"][index], found["std"][index], found["n"][index]))
            rows.append([base, f"{x:g}", *cells])
    return ["series", "sigma", *layers], rows


def series_blocks(store: Store) -> list[Block]:
    """Every plan's series as a wide table (x down, series across); per-layer distances folded."""
    blocks = [Block("heading", "Series"),
              Block("text", "Each cell is mean ± std over the n repeats of that point (std omitted when n = 1; "
                            "± 0: the repeats agree exactly). floor[...] is the noise floor of the named reference "
                            "model; Delta(a,b) = |b - a| per repeat (Eq. 4).")]
    for plan in store.plans():
        spec = parse_experiment(plan["spec"], plan["id"])
        table = series_table(store, plan["id"])
        if not table:
            continue
        main = {name: entry for name, entry in table.items() if entry["kind"] != LAYER_KIND}
        layers = {name: entry for name, entry in table.items() if entry["kind"] == LAYER_KIND}
        names, rows = wide_series(main)
        x_name = "epoch" if all(entry["kind"].startswith("epoch_") for entry in main.values()) else "sigma"
        blocks.append(Block("heading", f"{spec.title} ({plan['dataset']})", 3))
        blocks.append(Block("table", ([x_name, *names, "n"], rows)))
        if layers:
            blocks.append(Block("details", [Block("table", layer_table(layers))],
                                title=f"Per-layer distances of {spec.name} ({len(layers)} series)"))
    return blocks


def _setting(key: str, value: object) -> object:
    """A preset setting as the configuration table shows it (a value that stands for a default says so)."""
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return SETTING_NOTES.get((key, value), value) if not isinstance(value, bool) else value


def configuration_blocks(store: Store) -> list[Block]:
    """The presets (folded), the datasets' fingerprints, the environment and the timings."""
    blocks = [Block("heading", "Configuration, environment and timings")]
    presets = {json.dumps(plan["preset"], sort_keys=True) for plan in store.plans()}
    for preset_json in sorted(presets):
        preset = json.loads(preset_json)
        inner = [Block("text", str(preset.get("description", "")))]
        deviations = preset.get("deviations") or []
        overridden = overridden_settings(preset)
        if overridden:
            inner.append(Block("text", "This run changed the shipped preset: " + "; ".join(overridden) + ". The "
                               "description and the deviations below are the shipped preset's: where they name "
                               "these settings, the settings table below has the values that ran."))
        if deviations:
            inner.append(Block("table", (["deviation from the paper"], [[d] for d in deviations])))
        scalars = [[key, _setting(key, value)]
                   for key, value in sorted(preset.items()) if key not in ("deviations", "description")]
        inner.append(Block("table", (["setting", "value"], scalars)))
        blocks.append(Block("details", inner, title=f"Preset {preset['name']} ({len(deviations)} deviations from the paper"
                             f"{'; settings changed for this run' if overridden else ''})"))
    sources = [[s["name"], s["description"], s["fingerprint"], s["train_size"], s["test_size"], s["origin"]]
               for s in store.sources()]
    blocks.append(Block("details", [Block("table", (["name", "description", "SHA-256", "train", "test", "origin"],
                                                     sources))], title="Datasets and their fingerprints"))
    summary: dict[str, set[str]] = defaultdict(set)
    for row in store.job_rows():
        if row["environment"]:
            environment = json.loads(row["environment"])
            for key in ENVIRONMENT_KEYS:
                if key in environment:
                    summary[key].add(str(environment[key]))
    blocks.append(Block("heading", "Environment", 3))
    blocks.append(Block("table", (["item", "value"], [[key, ", ".join(sorted(v))] for key, v in summary.items()])))
    timings = store.timings()
    if timings:
        rows = []
        for timing in timings:
            detail = json.loads(timing["detail"]) if timing["detail"] else {}
            rows.append([timing["command"], time.strftime("%Y-%m-%d %H:%M", time.localtime(timing["started"])),
                         _duration(timing["seconds"]), timing["jobs_trained"], detail.get("jobs_total"),
                         detail.get("device"), detail.get("workers"), detail.get("ensemble_size")])
        blocks.append(Block("heading", "Timings", 3))
        blocks.append(Block("table", (["command", "started", "wall time", "trained", "jobs in plan", "device",
                                       "workers", "ensemble size"], rows)))
    return blocks


__all__ = ["configuration_blocks", "evidence_blocks", "series_blocks", "summary_blocks", "wide_series"]
