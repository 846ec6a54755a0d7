"""The federated-learning simulation spec: a TOML file, validated into frozen dataclasses.

Every field has a one-line docstring (it doubles as documentation, see ``docs/fl.md``). Errors
name the file, the ``[section] key`` and what was expected. Any field can be overridden from the
command line as ``section.key=value`` (the value is parsed as a TOML value, e.g.
``training.lr=3e-3``, ``pol.client_sigma=[0.1, 0.2]``, ``simulation.defence="both"``).

Layout (see ``src/pudlab/fl/specs/mnist5k_noniid.toml``)::

    [simulation]   dataset, clients, rounds, seed, split_seed, eval_fraction, init_seed, defence
    [sampling]     mode (iid | noniid), setting (S-X-Y-Z per client), labels, disjoint
    [model]        widths, hidden
    [training]     local_epochs, batch_size, lr
    [aggregation]  rule, f, m, weighted
    [pol]          challenge, challenge_fraction, sigma, client_sigma, checkpoint_every, top_q,
                   threshold, challenger, utility_epochs, utility_every
    [[adversaries]] kind, clients, and the kind's parameters
"""

from __future__ import annotations

import copy
import dataclasses
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SamplingError, SpecError
from ..sampling import SamplingSetting

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFENCES = ("none", "multikrum", "pol", "both")
"""The defences a simulation can run: none, Multi-Krum aggregation, PoL challenges, or both."""
BYZANTINE_KINDS = ("random_weights", "gaussian", "sign_flip", "scaled")
ADVERSARY_KINDS = (*BYZANTINE_KINDS, "thief", "lazy")
BASE_RULES = ("fedavg", "krum", "multikrum")
SPECS_DIR = Path(__file__).parent / "specs"


# ----------------------------------------------------------------------------------- sections
@dataclass(frozen=True)
class SimulationSection:
    """[simulation]: what is simulated, and the root seeds."""

    dataset: str = "mnist-5k"
    """Dataset name or path (as ``pudlab.data.load_source`` takes it)."""
    clients: int = 10
    """Number of clients n."""
    rounds: int = 10
    """Federated rounds R."""
    seed: int = 0
    """Root seed: client samples, keyed noise, batch orders, adversaries and challenges derive from it."""
    split_seed: int = 0
    """Seed of the 90/10 T_t / T_e split of the official training set."""
    eval_fraction: float = 0.1
    """Fraction of the official training set held out as T_e (global accuracy is measured on it)."""
    init_seed: int = 0
    """Seed of the initial global model (Glorot-uniform, shared by every defence)."""
    defence: str = "all"
    """Defence(s) to run: none, multikrum, pol, both, or all (each of the four, same attack)."""
    name: str = ""
    """Label for reports (default: the spec file's stem)."""
    threads: int = 1
    """Torch intra-op threads per worker (1 is fastest for these small models; results depend on it)."""
    workers: int = 1
    """Defences run in parallel worker processes (results do not depend on it)."""


@dataclass(frozen=True)
class SamplingSection:
    """[sampling]: each client's local data, an S-X-Y-Z sample of T_t."""

    mode: str = "iid"
    """iid: every client covers all labels (X = Y = 1); noniid: label windows per client."""
    setting: str = "S-1-1-0.1"
    """Per-client S-X-Y-Z. noniid: client k's window overlaps client k-1's by ceil(C*X*Y) labels."""
    labels: tuple[tuple[int, ...], ...] = ()
    """Explicit label list per client (noniid only; overrides the window rule), e.g. [[0, 1], [1, 2]]."""
    disjoint: bool = True
    """Clients' draws are disjoint (no sample held by two clients)."""

    @property
    def sampling_setting(self) -> SamplingSetting:
        return SamplingSetting.parse(self.setting)


@dataclass(frozen=True)
class ModelSection:
    """[model]: the M_cnn every client trains."""

    widths: tuple[int, ...] = (8, 16, 32)
    """Output channels of the three conv blocks."""
    hidden: int = 32
    """Units of the hidden dense layer."""


@dataclass(frozen=True)
class TrainingSection:
    """[training]: local training of one client in one round (Adam, fresh state each round)."""

    local_epochs: int = 1
    """Passes over the client's local data per round."""
    batch_size: int = 32
    """Samples per local Adam step."""
    lr: float = 1e-3
    """Adam learning rate, per step."""


@dataclass(frozen=True)
class AggregationSection:
    """[aggregation]: how the server combines the accepted updates."""

    rule: str = "fedavg"
    """Rule without Multi-Krum defence (fedavg, krum, multikrum)."""
    f: int = 1
    """Multi-Krum: assumed number of Byzantine clients (n > 2f + 2)."""
    m: int | None = None
    """Multi-Krum: updates kept and averaged (default n - f)."""
    weighted: bool = False
    """Multi-Krum: weight the kept updates by sample count (Blanchard et al.: unweighted)."""


@dataclass(frozen=True)
class PolSection:
    """[pol]: Proof-of-Learning challenges on obfuscated data."""

    challenge: str = "all"
    """Which clients the server challenges each round: all, or random (challenge_fraction of them)."""
    challenge_fraction: float = 1.0
    """random: fraction of the clients challenged per round (at least one)."""
    sigma: float = 0.05
    """Obfuscation sigma of the data a client shares in its PoL bundle ([0, 1] pixel units)."""
    client_sigma: tuple[float, ...] = ()
    """Per-client sigma (overrides sigma; one value per client)."""
    checkpoint_every: int = 5
    """Local Adam steps between two checkpoints of the proof."""
    top_q: int = 0
    """Segments replayed per epoch, those with the largest updates; 0 replays all."""
    threshold: str | float = "auto"
    """Replay acceptance threshold: auto (derived by the verifier), or a number (F-norm)."""
    multiplier: float = 2.5
    """auto: threshold = multiplier x the largest replay gap on fresh re-obfuscations of O(T)."""
    calibration_replays: int = 2
    """auto: re-obfuscations of O(T) the verifier replays per segment to measure that gap."""
    challenger: str | int = "server"
    """Who receives the shared data: server (utility vs chance), or a client index (vs its own data)."""
    utility_epochs: int = 5
    """Epochs of the challenger's utility model trained on the obfuscated data it received."""
    utility_every: int = 0
    """Measure the challenger's utility every k rounds (0: after the last round only)."""

    def sigma_of(self, client: int) -> float:
        return self.client_sigma[client] if self.client_sigma else self.sigma


@dataclass(frozen=True)
class AdversarySpec:
    """[[adversaries]]: one kind of misbehaviour, by one or more clients."""

    kind: str
    """random_weights, gaussian, sign_flip, scaled (Byzantine); thief (free-rider); lazy."""
    clients: tuple[int, ...]
    """Indices (0-based) of the clients that behave so."""
    std: float = 0.1
    """random_weights: std of the N(0, std^2) weights; gaussian: std of the noise added to the update."""
    scale: float = 5.0
    """scaled: the update is multiplied by scale; sign_flip: by -scale."""
    copy: str = "client"
    """thief: copy another client's model (client) or the last global model plus noise (global)."""
    victim: int | None = None
    """thief, copy = client: whose model is copied (default: the lowest-index honest client)."""
    noise_std: float = 0.0
    """thief: std of the N(0, noise_std^2) noise added to the copied model."""
    step_fraction: float = 0.25
    """lazy: fraction of the claimed local steps actually trained."""
    start_round: int = 1
    """First round (1-based) in which the client misbehaves; honest before."""

    @property
    def family(self) -> str:
        """byzantine, thief or lazy."""
        return "byzantine" if self.kind in BYZANTINE_KINDS else self.kind


@dataclass(frozen=True)
class SimulationSpec:
    """A whole simulation spec."""

    simulation: SimulationSection = field(default_factory=SimulationSection)
    sampling: SamplingSection = field(default_factory=SamplingSection)
    model: ModelSection = field(default_factory=ModelSection)
    training: TrainingSection = field(default_factory=TrainingSection)
    aggregation: AggregationSection = field(default_factory=AggregationSection)
    pol: PolSection = field(default_factory=PolSection)
    adversaries: tuple[AdversarySpec, ...] = ()
    source: str = "<spec>"
    """Where the spec came from (file path), for messages."""

    @property
    def name(self) -> str:
        return self.simulation.name or Path(self.source).stem

    @property
    def defences(self) -> tuple[str, ...]:
        """The defences to run (``all`` expanded)."""
        return DEFENCES if self.simulation.defence == "all" else (self.simulation.defence,)

    def adversary_of(self, client: int) -> AdversarySpec | None:
        for adversary in self.adversaries:
            if client in adversary.clients:
                return adversary
        return None

    @property
    def honest_clients(self) -> tuple[int, ...]:
        return tuple(c for c in range(self.simulation.clients) if self.adversary_of(c) is None)

    def to_dict(self) -> dict:
        """Plain data (TOML-shaped, None dropped): stored with every simulation, hashed for resume."""
        data: dict[str, Any] = {}
        for section in ("simulation", "sampling", "model", "training", "aggregation", "pol"):
            data[section] = _plain(getattr(self, section))
        data["adversaries"] = [_plain(adversary) for adversary in self.adversaries]
        return data


def _plain(section: object) -> dict:
    result = {}
    for item in dataclasses.fields(section):  # type: ignore[arg-type]
        value = getattr(section, item.name)
        if value is None:
            continue
        if isinstance(value, tuple):
            value = [list(v) if isinstance(v, tuple) else v for v in value]
        result[item.name] = value
    return result


# ----------------------------------------------------------------------------------- reading
class _Reader:
    """Typed access to one TOML table with messages naming file, table and key."""

    def __init__(self, source: str, path: str, data: object) -> None:
        if not isinstance(data, Mapping):
            raise SpecError(f"{source}: [{path}] must be a table, got {type(data).__name__}")
        self.source, self.path, self.data = source, path, dict(data)

    def where(self, key: str) -> str:
        return f"{self.source}: [{self.path}] {key}"

    def fail(self, key: str, expected: str) -> SpecError:
        return SpecError(f"{self.where(key)} = {self.data.get(key)!r}; expected {expected}")

    def check_keys(self, allowed: Sequence[str]) -> None:
        unknown = sorted(set(self.data) - set(allowed))
        if unknown:
            raise SpecError(f"{self.source}: [{self.path}] unknown key(s) {unknown}; known: {', '.join(allowed)}")

    def integer(self, key: str, default: int | None, *, low: int | None = None) -> int | None:
        value = self.data.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or (low is not None and value < low):
            raise self.fail(key, f"an integer >= {low}" if low is not None else "an integer")
        return value

    def number(self, key: str, default: float, *, low: float | None = None, high: float | None = None,
               low_open: bool = False) -> float:
        value = self.data.get(key, default)
        bounds = _bounds(low, high, low_open)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self.fail(key, f"a number {bounds}".strip())
        value = float(value)
        if (low is not None and (value < low or (low_open and value == low))) or (high is not None and value > high):
            raise self.fail(key, f"a number {bounds}")
        return value

    def string(self, key: str, default: str, *, choices: Sequence[str] | None = None) -> str:
        value = self.data.get(key, default)
        if not isinstance(value, str) or (choices is not None and value not in choices):
            raise self.fail(key, f"one of {', '.join(choices)}" if choices else "a string")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, "true or false")
        return value

    def int_list(self, key: str, default: Sequence[int], *, low: int = 0) -> tuple[int, ...]:
        value = self.data.get(key, list(default))
        if not isinstance(value, list) or any(isinstance(v, bool) or not isinstance(v, int) or v < low for v in value):
            raise self.fail(key, f"a list of integers >= {low}")
        return tuple(value)

    def float_list(self, key: str, default: Sequence[float], *, low: float = 0.0) -> tuple[float, ...]:
        value = self.data.get(key, list(default))
        if not isinstance(value, list) or any(
            isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < low for v in value
        ):
            raise self.fail(key, f"a list of numbers >= {low:g}")
        return tuple(float(v) for v in value)


def _bounds(low: float | None, high: float | None, low_open: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low:g}, {high:g}]"
    if low is not None:
        return f"{'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"<= {high:g}"
    return ""


def _field_names(cls: type) -> list[str]:
    return [item.name for item in dataclasses.fields(cls)]


def _read_simulation(reader: _Reader) -> SimulationSection:
    reader.check_keys(_field_names(SimulationSection))
    dataset = reader.string("dataset", "mnist-5k")
    if not dataset:
        raise reader.fail("dataset", "a dataset name or path")
    return SimulationSection(
        dataset=dataset,
        clients=reader.integer("clients", 10, low=1),  # type: ignore[arg-type]
        rounds=reader.integer("rounds", 10, low=0),  # type: ignore[arg-type]
        seed=reader.integer("seed", 0, low=0),  # type: ignore[arg-type]
        split_seed=reader.integer("split_seed", 0, low=0),  # type: ignore[arg-type]
        eval_fraction=reader.number("eval_fraction", 0.1, low=0.0, high=1.0, low_open=True),
        init_seed=reader.integer("init_seed", 0, low=0),  # type: ignore[arg-type]
        defence=reader.string("defence", "all", choices=(*DEFENCES, "all")),
        name=reader.string("name", ""),
        threads=reader.integer("threads", 1, low=1),  # type: ignore[arg-type]
        workers=reader.integer("workers", 1, low=1),  # type: ignore[arg-type]
    )


def _read_sampling(reader: _Reader, clients: int) -> SamplingSection:
    reader.check_keys(_field_names(SamplingSection))
    mode = reader.string("mode", "iid", choices=("iid", "noniid"))
    setting = reader.string("setting", "S-1-1-0.1" if mode == "iid" else "S-0.3-0.6-0.33")
    try:
        parsed = SamplingSetting.parse(setting)
    except SamplingError as exc:
        raise SpecError(f"{reader.where('setting')}: {exc}") from exc
    if mode == "iid" and (parsed.label_degree != 1.0 or parsed.label_overlap != 1.0):
        raise reader.fail("setting", "S-1-1-Z in iid mode (every client covers every label)")
    raw_labels = reader.data.get("labels", [])
    if not isinstance(raw_labels, list) or any(
        not isinstance(row, list) or not row or any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in row)
        for row in raw_labels
    ):
        raise reader.fail("labels", "a list of non-empty label lists, one per client, e.g. [[0, 1], [1, 2]]")
    if raw_labels and mode != "noniid":
        raise reader.fail("labels", "no explicit labels in iid mode (set mode = \"noniid\")")
    if raw_labels and len(raw_labels) != clients:
        raise reader.fail("labels", f"one label list per client ({clients} lists), got {len(raw_labels)}")
    for row in raw_labels:
        if len(set(row)) != len(row):
            raise reader.fail("labels", f"label lists without repeats (a label repeats in {row})")
    return SamplingSection(mode, setting, tuple(tuple(row) for row in raw_labels), reader.boolean("disjoint", True))


def _read_model(reader: _Reader) -> ModelSection:
    reader.check_keys(_field_names(ModelSection))
    widths = reader.int_list("widths", (8, 16, 32), low=1)
    if len(widths) != 3:
        raise reader.fail("widths", "three positive integers, e.g. [8, 16, 32]")
    return ModelSection(widths, reader.integer("hidden", 32, low=1))  # type: ignore[arg-type]


def _read_training(reader: _Reader) -> TrainingSection:
    reader.check_keys(_field_names(TrainingSection))
    return TrainingSection(
        local_epochs=reader.integer("local_epochs", 1, low=1),  # type: ignore[arg-type]
        batch_size=reader.integer("batch_size", 32, low=1),  # type: ignore[arg-type]
        lr=reader.number("lr", 1e-3, low=0.0, low_open=True),
    )


def _read_aggregation(reader: _Reader, clients: int, needs_krum: bool) -> AggregationSection:
    from .aggregation import KrumParameterError, check_krum_parameters

    reader.check_keys(_field_names(AggregationSection))
    section = AggregationSection(
        rule=reader.string("rule", "fedavg", choices=BASE_RULES),
        f=reader.integer("f", 1, low=0),  # type: ignore[arg-type]
        m=reader.integer("m", None, low=1),
        weighted=reader.boolean("weighted", False),
    )
    if needs_krum or section.rule != "fedavg":
        try:
            check_krum_parameters(clients, section.f, section.m)
        except KrumParameterError as exc:
            raise SpecError(f"{reader.where('f')} / m with [simulation] clients = {clients}: {exc}") from exc
    return section


def _read_pol(reader: _Reader, clients: int) -> PolSection:
    reader.check_keys(_field_names(PolSection))
    client_sigma = reader.float_list("client_sigma", ())
    if client_sigma and len(client_sigma) != clients:
        raise reader.fail("client_sigma", f"one sigma per client ({clients} numbers), got {len(client_sigma)}")
    threshold = reader.data.get("threshold", "auto")
    if isinstance(threshold, bool) or not (
        threshold == "auto" or (isinstance(threshold, int | float) and math.isfinite(threshold) and threshold >= 0)
    ):
        raise reader.fail("threshold", '"auto" or a number >= 0 (an F-norm)')
    challenger = reader.data.get("challenger", "server")
    if isinstance(challenger, bool) or not (
        challenger == "server" or (isinstance(challenger, int) and 0 <= challenger < clients)
    ):
        raise reader.fail("challenger", f'"server" or a client index 0..{clients - 1}')
    return PolSection(
        challenge=reader.string("challenge", "all", choices=("all", "random")),
        challenge_fraction=reader.number("challenge_fraction", 1.0, low=0.0, high=1.0, low_open=True),
        sigma=reader.number("sigma", 0.05, low=0.0),
        client_sigma=client_sigma,
        checkpoint_every=reader.integer("checkpoint_every", 5, low=1),  # type: ignore[arg-type]
        top_q=reader.integer("top_q", 0, low=0),  # type: ignore[arg-type]
        threshold="auto" if threshold == "auto" else float(threshold),
        multiplier=reader.number("multiplier", 2.5, low=0.0, low_open=True),
        calibration_replays=reader.integer("calibration_replays", 2, low=1),  # type: ignore[arg-type]
        challenger=challenger,
        utility_epochs=reader.integer("utility_epochs", 5, low=0),  # type: ignore[arg-type]
        utility_every=reader.integer("utility_every", 0, low=0),  # type: ignore[arg-type]
    )


_KIND_KEYS = {
    "random_weights": ("std",),
    "gaussian": ("std",),
    "sign_flip": ("scale",),
    "scaled": ("scale",),
    "thief": ("copy", "victim", "noise_std"),
    "lazy": ("step_fraction",),
}


def _read_adversary(reader: _Reader, clients: int) -> AdversarySpec:
    kind = reader.string("kind", "", choices=ADVERSARY_KINDS)
    reader.check_keys(("kind", "clients", "start_round", *_KIND_KEYS[kind]))
    members = reader.int_list("clients", ())
    if not members:
        raise reader.fail("clients", "a non-empty list of client indices")
    if any(c >= clients for c in members) or len(set(members)) != len(members):
        raise reader.fail("clients", f"distinct client indices in 0..{clients - 1}")
    adversary = AdversarySpec(
        kind=kind,
        clients=members,
        std=reader.number("std", 0.1, low=0.0, low_open=True),
        scale=reader.number("scale", 5.0, low=0.0, low_open=True),
        copy=reader.string("copy", "client", choices=("client", "global")),
        victim=reader.integer("victim", None, low=0),
        noise_std=reader.number("noise_std", 0.0, low=0.0),
        step_fraction=reader.number("step_fraction", 0.25, low=0.0, high=1.0, low_open=True),
        start_round=reader.integer("start_round", 1, low=1),  # type: ignore[arg-type]
    )
    if adversary.victim is not None and (adversary.victim >= clients or adversary.victim in members):
        raise reader.fail("victim", f"another client's index in 0..{clients - 1}, not one of the thieves {list(members)}")
    if kind == "thief" and adversary.copy == "global" and adversary.victim is not None:
        raise reader.fail("victim", 'no victim with copy = "global"')
    return adversary


def spec_from_dict(data: Mapping[str, Any], source: str = "<spec>") -> SimulationSpec:
    """Validate plain TOML-shaped data into a :class:`SimulationSpec`."""
    known = ("simulation", "sampling", "model", "training", "aggregation", "pol", "adversaries")
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise SpecError(f"{source}: unknown table(s) {unknown}; known: {', '.join(known)}")
    simulation = _read_simulation(_Reader(source, "simulation", data.get("simulation", {})))
    clients = simulation.clients
    needs_krum = simulation.defence in ("multikrum", "both", "all")
    raw_adversaries = data.get("adversaries", [])
    if not isinstance(raw_adversaries, list):
        raise SpecError(f"{source}: adversaries must be an array of tables [[adversaries]]")
    adversaries = tuple(
        _read_adversary(_Reader(source, f"adversaries.{index}", raw), clients)
        for index, raw in enumerate(raw_adversaries)
    )
    seen: dict[int, int] = {}
    for index, adversary in enumerate(adversaries):
        for client in adversary.clients:
            if client in seen:
                raise SpecError(f"{source}: [adversaries.{index}] clients: client {client} is already in "
                                f"[adversaries.{seen[client]}]; expected each client in at most one entry")
            seen[client] = index
    for index, adversary in enumerate(adversaries):
        victim = adversary.victim
        if victim is not None and victim in seen and adversaries[seen[victim]].kind == "thief":
            raise SpecError(f"{source}: [adversaries.{index}] victim = {victim}; expected a client that trains "
                            f"(client {victim} is a thief in [adversaries.{seen[victim]}])")
    if len(seen) >= clients:
        raise SpecError(f"{source}: [[adversaries]] cover all {clients} clients; expected at least one honest client")
    spec = SimulationSpec(
        simulation=simulation,
        sampling=_read_sampling(_Reader(source, "sampling", data.get("sampling", {})), clients),
        model=_read_model(_Reader(source, "model", data.get("model", {}))),
        training=_read_training(_Reader(source, "training", data.get("training", {}))),
        aggregation=_read_aggregation(_Reader(source, "aggregation", data.get("aggregation", {})), clients, needs_krum),
        pol=_read_pol(_Reader(source, "pol", data.get("pol", {})), clients),
        adversaries=adversaries,
        source=source,
    )
    return spec


# ----------------------------------------------------------------------------------- overrides
def parse_override(text: str) -> tuple[str, str, Any]:
    """``section.key=value`` -> (section, key, value); the value is parsed as TOML, else a string."""
    if "=" not in text:
        raise SpecError(f"override {text!r}: expected section.key=value, e.g. training.lr=0.003")
    path, raw = (part.strip() for part in text.split("=", 1))
    if path.count(".") != 1 or not all(path.split(".")):
        raise SpecError(f"override {text!r}: expected section.key=value, e.g. training.lr=0.003")
    section, key = path.split(".")
    try:
        value = tomllib.loads(f"value = {raw}")["value"]
    except tomllib.TOMLDecodeError:
        value = raw
    return section, key, value


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str | tuple[str, str, Any]]) -> dict:
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


def read_spec_data(path: str | Path) -> dict:
    """The raw TOML tables of a spec file (a shipped spec's name also works, e.g. ``mnist5k_noniid``)."""
    path = resolve_spec_path(path)
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise SpecError(f"{path}: file not found") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML ({exc})") from exc
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not a UTF-8 text file ({exc})") from exc


def shipped_specs() -> tuple[str, ...]:
    """Names of the specs shipped with the package."""
    return tuple(sorted(path.stem for path in SPECS_DIR.glob("*.toml")))


def resolve_spec_path(path: str | Path) -> Path:
    """A path as given, or a shipped spec by name."""
    candidate = Path(path)
    if candidate.exists() or candidate.suffix == ".toml":
        return candidate
    shipped = SPECS_DIR / f"{candidate.name}.toml"
    if shipped.exists():
        return shipped
    raise SpecError(f"{path}: no such spec file; shipped specs: {', '.join(shipped_specs())}")


def load_spec(path: str | Path, overrides: Sequence[str | tuple[str, str, Any]] = ()) -> SimulationSpec:
    """Read, override and validate a simulation spec."""
    resolved = resolve_spec_path(path)
    return spec_from_dict(apply_overrides(read_spec_data(resolved), overrides), str(resolved))


__all__ = [
    "ADVERSARY_KINDS",
    "BYZANTINE_KINDS",
    "DEFENCES",
    "AdversarySpec",
    "AggregationSection",
    "ModelSection",
    "PolSection",
    "SamplingSection",
    "SimulationSection",
    "SimulationSpec",
    "TrainingSection",
    "apply_overrides",
    "load_spec",
    "parse_override",
    "read_spec_data",
    "shipped_specs",
    "spec_from_dict",
]
