"""Aggregation rule x attack, with and without PoL challenges: the FL robustness table.

One simulation per (rule, attack): the spec with ``aggregation.rule = rule`` and the attack's
``[[adversaries]]``, run under the defences ``none`` (the rule alone) and ``pol`` (the rule over the
updates that pass a PoL challenge on obfuscated data). Each cell is the final global accuracy on
T_e. Every simulation is its own store under ``ROOT/<rule>/<attack>/`` (resumable, as
``pudlab fl simulate`` writes it); the table is ``ROOT/robustness.json`` (see :class:`RobustnessTable`).

Attacks (the colluders are clients ``1 .. k``, k = ``colluders``, default the spec's f):
``clean`` (no adversary), ``sign_flip``, ``alie``, ``fang_krum``, ``fang_trmean``, ``inflate``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from pudlab.errors import SpecError
from pudlab.fl.spec import BASE_RULES, AdversarySpec, SimulationSpec
from pudlab.records import Record, record_from_dict, require_mapping

if TYPE_CHECKING:
    from pudlab.fl.records import RoundRecord

ATTACKS = ("clean", "sign_flip", "alie", "fang_krum", "fang_trmean", "inflate")
"""Named attacks of the robustness table (``clean``: no adversary)."""
DEFENCE_COLUMNS = {"none": "rule only", "pol": "rule + PoL"}
TABLE_KIND = "pudlab.fl_robustness"
Simulate = Callable[..., "dict[str, list[RoundRecord]]"]
"""One simulation into a store, records per defence (``run_simulation``, ``run_flower``)."""


def attack_adversaries(attack: str, colluders: Sequence[int]) -> tuple[AdversarySpec, ...]:
    """The ``[[adversaries]]`` of a named attack, played by ``colluders``."""
    if attack not in ATTACKS:
        raise SpecError(f"robustness: unknown attack {attack!r}; expected one of {', '.join(ATTACKS)}")
    if attack == "clean":
        return ()
    return (AdversarySpec(kind=attack, clients=tuple(colluders), scale=1.0 if attack == "inflate" else 5.0),)


@dataclass(frozen=True)
class RobustnessTable(Record):
    """Final accuracy per rule, attack and defence (``none`` / ``pol``), with what was run."""

    spec_name: str
    rules: tuple[str, ...]
    attacks: tuple[str, ...]
    colluders: tuple[int, ...]
    accuracy: dict[str, dict[str, dict[str, float]]]
    """rule -> attack -> defence -> final accuracy on T_e."""
    pol_caught: dict[str, dict[str, list[int]]]
    """rule -> attack -> [cheating submissions rejected, cheating submissions challenged] over all rounds."""
    seconds: float

    DERIVED = ("kind",)

    @property
    def kind(self) -> str:
        """The JSON's ``kind``: :data:`TABLE_KIND`."""
        return TABLE_KIND

    @classmethod
    def from_dict(cls, data: object, *, where: str | None = None) -> Self:
        where = "robustness table" if where is None else where
        if require_mapping(data, where).get("kind") != TABLE_KIND:
            raise SpecError(f"{where}: not a robustness table (expected kind '{TABLE_KIND}')")
        return record_from_dict(cls, data, where)

    def markdown(self) -> str:
        """The table as Markdown: one row per attack, a column pair (rule only / + PoL) per rule."""
        header = "| attack | " + " | ".join(f"{rule} | {rule} + PoL" for rule in self.rules) + " |"
        lines = [header, "|---|" + "---:|" * (2 * len(self.rules))]
        for attack in self.attacks:
            cells = []
            for rule in self.rules:
                row = self.accuracy[rule][attack]
                caught = self.pol_caught.get(rule, {}).get(attack)
                pol = f"{row['pol']:.3f}" + (f" ({caught[0]}/{caught[1]} caught)" if caught and caught[1] else "")
                cells.append(f"{row['none']:.3f} | {pol}")
            lines.append(f"| {attack} | " + " | ".join(cells) + " |")
        return "\n".join(lines)


def robustness_table(spec: SimulationSpec, root: str | Path, *, rules: Sequence[str] = BASE_RULES,
                     attacks: Sequence[str] = ATTACKS, colluders: Sequence[int] | None = None,
                     source: Any = None, log: Callable[[str], None] | None = None,
                     data_dir: str | None = None, simulate: Simulate | None = None) -> RobustnessTable:
    """Run every (rule, attack) under the defences none and pol; write and return the table.

    ``simulate`` runs one simulation (default :func:`pudlab.fl.simulation.run_simulation`, in process;
    :func:`pudlab.fl.flower.engine.run_flower` runs each through Flower, with the same numbers). It
    is called as ``simulate(spec, store, defences=..., data_dir=...)``, with ``source=`` only when
    ``source`` is given.
    """
    import time

    from pudlab.fl.simulation import final_accuracy, run_simulation
    from pudlab.io import write_json

    run = simulate or run_simulation
    extra: dict[str, Any] = {} if source is None else {"source": source}
    unknown = [rule for rule in rules if rule not in BASE_RULES]
    if unknown:
        raise SpecError(f"robustness: unknown rule(s) {unknown}; expected some of {', '.join(BASE_RULES)}")
    chosen = tuple(colluders) if colluders is not None else tuple(range(1, 1 + max(spec.aggregation.f, 1)))
    started = time.perf_counter()
    accuracy: dict[str, dict[str, dict[str, float]]] = {}
    caught: dict[str, dict[str, list[int]]] = {}
    for rule in rules:
        for attack in attacks:
            variant = dataclasses.replace(
                spec, aggregation=dataclasses.replace(spec.aggregation, rule=rule),
                simulation=dataclasses.replace(spec.simulation, defence="all", name=f"{spec.name}-{rule}-{attack}"),
                adversaries=attack_adversaries(attack, chosen))
            results = run(variant, Path(root) / rule / attack, defences=("none", "pol"), data_dir=data_dir, **extra)
            accuracy.setdefault(rule, {})[attack] = {d: final_accuracy(results[d]) for d in ("none", "pol")}
            challenges = [r.pol for r in results["pol"] if r.pol is not None]
            caught.setdefault(rule, {})[attack] = [sum(p.cheaters_caught for p in challenges),
                                                   sum(p.cheaters_challenged for p in challenges)]
            if log is not None:
                cell = accuracy[rule][attack]
                log(f"{rule:>12} x {attack:<11}: rule only {cell['none']:.3f}, + PoL {cell['pol']:.3f}")
    table = RobustnessTable(spec.name, tuple(rules), tuple(attacks), chosen, accuracy, caught,
                            time.perf_counter() - started)
    write_json(Path(root) / "robustness.json", table.to_dict())
    return table


__all__ = ["ATTACKS", "DEFENCE_COLUMNS", "TABLE_KIND", "RobustnessTable", "Simulate", "attack_adversaries",
           "robustness_table"]
