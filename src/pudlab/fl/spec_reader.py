"""Reading a federated-learning simulation spec: TOML -> validated :class:`pudlab.fl.spec.SimulationSpec`.

A spec argument is a path or a shipped spec's name (``pudlab/specs/fl/``, see
:func:`pudlab.config.shipped_names`). Errors have the shape of :class:`pudlab.config.Section`:
``<file>: <table>.<key> = <value>; expected <what>``. Any field can be overridden as
``section.key=value`` (the value is parsed as a TOML value, e.g. ``training.lr=3e-3``,
``pol.client_sigma=[0.1, 0.2]``, ``simulation.defence="both"``).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pudlab.config import Section, parse_toml, read_toml, resolve_spec
from pudlab.errors import SamplingError, SpecError
from pudlab.fl.aggregation import KrumParameterError, check_krum_parameters
from pudlab.fl.spec import (
    ADVERSARY_KINDS,
    BASE_RULES,
    DEFENCES,
    SECTION_NAMES,
    AdversarySpec,
    AggregationSection,
    ModelSection,
    PolSection,
    SamplingSection,
    SimulationSection,
    SimulationSpec,
    TrainingSection,
)
from pudlab.sampling import SamplingSetting

Override = str | tuple[str, str, Any]
"""``section.key=value``, or the parsed triple (section, key, value)."""


def _field_names(cls: type) -> list[str]:
    return [item.name for item in dataclasses.fields(cls)]


def _real(section: Section, key: str, default: float, **bounds: Any) -> float:
    """A bounded number as a float (an integer in the file, ``lr = 1``, is the same spec as ``1.0``)."""
    return float(section.number(key, default, **bounds))


# ----------------------------------------------------------------------------------- tables
def _read_simulation(section: Section) -> SimulationSection:
    section.check_keys(_field_names(SimulationSection))
    dataset = section.string("dataset", "mnist-5k")
    if not dataset:
        raise section.fail("dataset", "a dataset name or path")
    return SimulationSection(
        dataset=dataset,
        clients=section.integer("clients", 10, low=1),
        rounds=section.integer("rounds", 10, low=0),
        seed=section.integer("seed", 0, low=0),
        split_seed=section.integer("split_seed", 0, low=0),
        eval_fraction=_real(section, "eval_fraction", 0.1, low=0.0, high=1.0, low_open=True),
        init_seed=section.integer("init_seed", 0, low=0),
        defence=section.string("defence", "all", choices=(*DEFENCES, "all")),
        name=section.string("name", ""),
        threads=section.integer("threads", 1, low=1),
        workers=section.integer("workers", 1, low=1),
    )


_LABELS_EXPECTED = "a list of non-empty label lists, one per client, e.g. [[0, 1], [1, 2]]"


def _read_sampling(section: Section, clients: int) -> SamplingSection:
    section.check_keys(_field_names(SamplingSection))
    mode = section.string("mode", "iid", choices=("iid", "noniid"))
    setting = section.string("setting", "S-1-1-0.1" if mode == "iid" else "S-0.3-0.6-0.33")
    try:
        parsed = SamplingSetting.parse(setting)
    except SamplingError as exc:
        raise section.fail("setting", f"an S-X-Y-Z setting ({exc})") from exc
    if mode == "iid" and (parsed.label_degree != 1.0 or parsed.label_overlap != 1.0):
        raise section.fail("setting", "S-1-1-Z in iid mode (every client covers every label)")
    raw_labels = section.get("labels", list, [], expected=_LABELS_EXPECTED)
    if any(not isinstance(row, list) or not row
           or any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in row) for row in raw_labels):
        raise section.fail("labels", _LABELS_EXPECTED)
    if raw_labels and mode != "noniid":
        raise section.fail("labels", "no explicit labels in iid mode (set mode = \"noniid\")")
    if raw_labels and len(raw_labels) != clients:
        raise section.fail("labels", f"one label list per client ({clients} lists), got {len(raw_labels)}")
    for row in raw_labels:
        if len(set(row)) != len(row):
            raise section.fail("labels", f"label lists without repeats (a label repeats in {row})")
    return SamplingSection(mode, setting, tuple(tuple(row) for row in raw_labels), section.boolean("disjoint", True))


def _read_model(section: Section) -> ModelSection:
    section.check_keys(_field_names(ModelSection))
    widths = section.int_list("widths", (8, 16, 32), low=1)
    if len(widths) != 3:
        raise section.fail("widths", "three positive integers, e.g. [8, 16, 32]")
    return ModelSection(widths, section.integer("hidden", 32, low=1))


def _read_training(section: Section) -> TrainingSection:
    section.check_keys(_field_names(TrainingSection))
    return TrainingSection(
        local_epochs=section.integer("local_epochs", 1, low=1),
        batch_size=section.integer("batch_size", 32, low=1),
        lr=_real(section, "lr", 1e-3, low=0.0, low_open=True),
    )


def _read_aggregation(section: Section, clients: int, needs_krum: bool) -> AggregationSection:
    section.check_keys(_field_names(AggregationSection))
    aggregation = AggregationSection(
        rule=section.string("rule", "fedavg", choices=BASE_RULES),
        f=section.integer("f", 1, low=0),
        m=section.integer("m", None, low=1),
        weighted=section.boolean("weighted", False),
    )
    if needs_krum or aggregation.rule in ("krum", "multikrum"):
        try:
            check_krum_parameters(clients, aggregation.f, aggregation.m)
        except KrumParameterError as exc:
            raise SpecError(f"{section.where('f')} = {aggregation.f}, m = {aggregation.m}; expected values that "
                            f"fit simulation.clients = {clients}: {exc}") from exc
    limits = {"trimmed_mean": (2 * aggregation.f + 1, "n > 2f"), "bulyan": (4 * aggregation.f + 3, "n >= 4f + 3")}
    if aggregation.rule in limits and clients < limits[aggregation.rule][0]:
        raise SpecError(f"{section.where('f')} = {aggregation.f}; expected a value that fits simulation.clients = "
                        f"{clients}: {aggregation.rule} needs {limits[aggregation.rule][1]}")
    return aggregation


def _read_pol(section: Section, clients: int) -> PolSection:
    section.check_keys(_field_names(PolSection))
    client_sigma = section.float_list("client_sigma", (), low=0.0)
    if client_sigma and len(client_sigma) != clients:
        raise section.fail("client_sigma", f"one sigma per client ({clients} numbers), got {len(client_sigma)}")
    threshold_expected = '"auto" or a number >= 0 (an F-norm)'
    threshold = section.get("threshold", (str, int, float), "auto", expected=threshold_expected)
    if threshold != "auto" and (isinstance(threshold, str) or not math.isfinite(threshold) or threshold < 0):
        raise section.fail("threshold", threshold_expected)
    challenger_expected = f'"server" or a client index 0..{clients - 1}'
    challenger = section.get("challenger", (str, int), "server", expected=challenger_expected)
    if challenger != "server" and (isinstance(challenger, str) or not 0 <= challenger < clients):
        raise section.fail("challenger", challenger_expected)
    return PolSection(
        challenge=section.string("challenge", "all", choices=("all", "random")),
        challenge_fraction=_real(section, "challenge_fraction", 1.0, low=0.0, high=1.0, low_open=True),
        sigma=_real(section, "sigma", 0.05, low=0.0),
        client_sigma=client_sigma,
        checkpoint_every=section.integer("checkpoint_every", 5, low=1),
        top_q=section.integer("top_q", 0, low=0),
        threshold="auto" if threshold == "auto" else float(threshold),
        multiplier=_real(section, "multiplier", 2.5, low=0.0, low_open=True),
        calibration_replays=section.integer("calibration_replays", 2, low=1),
        challenger=challenger,
        utility_epochs=section.integer("utility_epochs", 5, low=0),
        utility_every=section.integer("utility_every", 0, low=0),
    )


_KIND_KEYS = {
    "random_weights": ("std",),
    "gaussian": ("std",),
    "sign_flip": ("scale",),
    "scaled": ("scale",),
    "alie": ("z",),
    "fang_krum": (),
    "fang_trmean": (),
    "inflate": ("scale", "factor"),
    "thief": ("copy", "victim", "noise_std", "forgery"),
    "lazy": ("step_fraction",),
}
"""The keys each adversary kind takes besides kind, clients and start_round."""
THIEF_FORGERIES = ("interpolate", "moments")
"""How a thief answers a PoL challenge (see :class:`pudlab.fl.spec.AdversarySpec`)."""


def _read_adversary(section: Section, clients: int) -> AdversarySpec:
    kind = section.string("kind", choices=ADVERSARY_KINDS)
    section.check_keys(("kind", "clients", "start_round", *_KIND_KEYS[kind]))
    members = section.int_list("clients", ())
    if not members:
        raise section.fail("clients", "a non-empty list of client indices")
    if any(c >= clients for c in members) or len(set(members)) != len(members):
        raise section.fail("clients", f"distinct client indices in 0..{clients - 1}")
    adversary = AdversarySpec(
        kind=kind,
        clients=members,
        std=_real(section, "std", 0.1, low=0.0, low_open=True),
        scale=_real(section, "scale", 5.0, low=0.0, low_open=True),
        z=None if not section.has("z") else _real(section, "z", 0.0, low=0.0),
        factor=_real(section, "factor", 10.0, low=1.0),
        copy=section.string("copy", "client", choices=("client", "global")),
        victim=section.integer("victim", None, low=0),
        noise_std=_real(section, "noise_std", 0.0, low=0.0),
        forgery=section.string("forgery", None, choices=THIEF_FORGERIES),
        step_fraction=_real(section, "step_fraction", 0.25, low=0.0, high=1.0, low_open=True),
        start_round=section.integer("start_round", 1, low=1),
    )
    if adversary.victim is not None and (adversary.victim >= clients or adversary.victim in members):
        raise section.fail("victim", f"another client's index in 0..{clients - 1}, not one of the thieves "
                                     f"{list(members)}")
    if kind == "thief" and adversary.copy == "global" and adversary.victim is not None:
        raise section.fail("victim", 'no victim with copy = "global"')
    return adversary


def _read_adversaries(source: str, raw: object, clients: int) -> tuple[AdversarySpec, ...]:
    """Every ``[[adversaries]]`` table, each client in at most one, thieves copying clients that train."""
    if not isinstance(raw, list):
        raise SpecError(f"{source}: adversaries = {raw!r}; expected an array of tables [[adversaries]]")
    adversaries = tuple(_read_adversary(Section(source, f"adversaries[{index}]", table), clients)
                        for index, table in enumerate(raw))
    seen: dict[int, int] = {}
    for index, adversary in enumerate(adversaries):
        for client in adversary.clients:
            if client in seen:
                raise SpecError(f"{source}: adversaries[{index}].clients = {list(adversary.clients)}; expected each "
                                f"client in at most one entry (client {client} is already in adversaries[{seen[client]}])")
            seen[client] = index
    for index, adversary in enumerate(adversaries):
        victim = adversary.victim
        if victim is not None and victim in seen and adversaries[seen[victim]].kind == "thief":
            raise SpecError(f"{source}: adversaries[{index}].victim = {victim}; expected a client that trains "
                            f"(client {victim} is a thief in adversaries[{seen[victim]}])")
    if len(seen) >= clients:
        raise SpecError(f"{source}: [[adversaries]] cover all {clients} clients; expected at least one honest client")
    return adversaries


def spec_from_dict(data: Mapping[str, Any], source: str = "<spec>") -> SimulationSpec:
    """Validate plain TOML-shaped data into a :class:`SimulationSpec`."""
    known = (*SECTION_NAMES, "adversaries")
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise SpecError(f"{source}: unknown table(s) {unknown}; known: {', '.join(known)}")

    def table(name: str) -> Section:
        return Section(source, name, data.get(name, {}))

    simulation = _read_simulation(table("simulation"))
    clients = simulation.clients
    adversaries = _read_adversaries(source, data.get("adversaries", []), clients)
    return SimulationSpec(
        simulation=simulation,
        sampling=_read_sampling(table("sampling"), clients),
        model=_read_model(table("model")),
        training=_read_training(table("training")),
        aggregation=_read_aggregation(table("aggregation"), clients,
                                      needs_krum=simulation.defence in ("multikrum", "both", "all")),
        pol=_read_pol(table("pol"), clients),
        adversaries=adversaries,
        source=source,
    )


# ----------------------------------------------------------------------------------- overrides and files
def parse_override(text: str) -> tuple[str, str, Any]:
    """``section.key=value`` -> (section, key, value); the value is parsed as TOML, else a string."""
    if "=" not in text:
        raise SpecError(f"override {text!r}: expected section.key=value, e.g. training.lr=0.003")
    path, raw = (part.strip() for part in text.split("=", 1))
    if path.count(".") != 1 or not all(path.split(".")):
        raise SpecError(f"override {text!r}: expected section.key=value, e.g. training.lr=0.003")
    section, key = path.split(".")
    try:
        value = parse_toml(f"value = {raw}", source=f"override {text!r}")["value"]
    except SpecError:
        value = raw
    return section, key, value


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[Override]) -> dict:
    """A copy of ``data`` with each override (``section.key=value`` or a parsed triple) applied."""
    result = copy.deepcopy(dict(data))
    for override in overrides:
        section, key, value = parse_override(override) if isinstance(override, str) else override
        if section == "adversaries":
            raise SpecError(f"override {section}.{key}: adversaries cannot be overridden one key at a time; "
                            "edit the spec file")
        table = result.setdefault(section, {})
        if not isinstance(table, dict):
            raise SpecError(f"override {section}.{key}: [{section}] is not a table")
        table[key] = value
    return result


def load_spec(path: str | Path, overrides: Sequence[Override] = ()) -> SimulationSpec:
    """Read, override and validate a simulation spec (a path, or a shipped spec's name)."""
    resolved = resolve_spec("fl", path, what="simulation spec")
    return spec_from_dict(apply_overrides(read_toml(resolved), overrides), str(resolved))


__all__ = ["Override", "apply_overrides", "load_spec", "parse_override", "spec_from_dict"]
