"""The federated-learning simulation spec: frozen dataclasses, one per TOML table.

Every field has a one-line docstring (it doubles as documentation, see ``docs/fl.md``). Reading,
validating and overriding a TOML spec file is :mod:`pudlab.fl.spec_reader` (``load_spec``).

Layout (see ``src/pudlab/specs/fl/mnist5k_noniid.toml``)::

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

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pudlab.sampling import SamplingSetting

DEFENCES = ("none", "multikrum", "pol", "both")
"""The defences a simulation can run: none, Multi-Krum aggregation, PoL challenges, or both."""
BYZANTINE_KINDS = ("random_weights", "gaussian", "sign_flip", "scaled")
ADAPTIVE_KINDS = ("alie", "fang_krum", "fang_trmean", "inflate")
"""Byzantine kinds that see the round's honest updates and know the rule (:mod:`pudlab.fl.adversaries`)."""
ADVERSARY_KINDS = (*BYZANTINE_KINDS, *ADAPTIVE_KINDS, "thief", "lazy")
BASE_RULES = ("fedavg", "krum", "multikrum", "median", "trimmed_mean", "bulyan")
SECTION_NAMES = ("simulation", "sampling", "model", "training", "aggregation", "pol")
"""The single tables of a spec, in order (``[[adversaries]]`` is the array)."""


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
    """Rule without Multi-Krum defence (fedavg, krum, multikrum, median, trimmed_mean, bulyan)."""
    f: int = 1
    """Krum rules, trimmed mean, Bulyan: assumed number of Byzantine clients (Krum: n > 2f + 2;
    trimmed mean: n > 2f; Bulyan: n >= 4f + 3)."""
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
    """random_weights, gaussian, sign_flip, scaled (Byzantine); alie, fang_krum, fang_trmean, inflate
    (adaptive); thief (free-rider); lazy."""
    clients: tuple[int, ...]
    """Indices (0-based) of the clients that behave so."""
    std: float = 0.1
    """random_weights: std of the N(0, std^2) weights; gaussian: std of the noise added to the update."""
    scale: float = 5.0
    """scaled: the update is multiplied by scale; sign_flip and inflate: by -scale."""
    z: float | None = None
    """alie: deviations in honest standard deviations (default: Baruch et al.'s z_max for n and the colluders)."""
    factor: float = 10.0
    """inflate: claimed sample count = factor x the real one."""
    copy: str = "client"
    """thief: copy another client's model (client) or the last global model plus noise (global)."""
    victim: int | None = None
    """thief, copy = client: whose model is copied (default: the lowest-index honest client)."""
    noise_std: float = 0.0
    """thief: std of the N(0, noise_std^2) noise added to the copied model."""
    forgery: str | None = None
    """thief: how it answers a PoL challenge: None or "interpolate" (checkpoints on the line from the
    global model to the stolen one), "moments" (its own training with the Adam moments before the last
    segment crafted so that replaying that segment lands on the stolen model)."""
    step_fraction: float = 0.25
    """lazy: fraction of the claimed local steps actually trained."""
    start_round: int = 1
    """First round (1-based) in which the client misbehaves; honest before."""

    @property
    def family(self) -> str:
        """byzantine, thief or lazy."""
        return "byzantine" if self.kind in BYZANTINE_KINDS or self.kind in ADAPTIVE_KINDS else self.kind


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
        for section in SECTION_NAMES:
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


__all__ = [
    "ADAPTIVE_KINDS",
    "ADVERSARY_KINDS",
    "BASE_RULES",
    "BYZANTINE_KINDS",
    "DEFENCES",
    "SECTION_NAMES",
    "AdversarySpec",
    "AggregationSection",
    "ModelSection",
    "PolSection",
    "SamplingSection",
    "SimulationSection",
    "SimulationSpec",
    "TrainingSection",
]
