"""pudlab's Flower ``ServerApp``: a spec's defences, round by round, into a pudlab store.

The run config (:mod:`.transport`: ``pudlab-spec``, ``pudlab-store``, ``pudlab-defences``,
``pudlab-rounds``, ``pudlab-data-dir``) names everything. For each defence the server builds a
:class:`pudlab.fl.simulation.Simulation` whose rounds run through :class:`FlowerRounds` (Flower
messages, :class:`~.strategy.PudlabStrategy`) instead of in memory: the store, the resume after a
kill, the T_e evaluation and the challenger's utility are pudlab's own code, so the two engines
write the same files. Per defence, ``STORE/<defence>/flower_costs.json`` keeps each round's
seconds and payload bytes by phase. A failure is written to ``STORE/flower_error.txt`` (one line)
before the app exits with it.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid, ServerApp

from pudlab.fl.clients import ClientPool
from pudlab.fl.flower.strategy import PudlabStrategy, wait_for_nodes
from pudlab.fl.flower.transport import (
    DATA_DIR_KEY,
    DEFENCES_KEY,
    FINISH,
    ROUNDS_KEY,
    SPEC_KEY,
    STORE_KEY,
    as_int,
    record_weights,
    spec_from_json,
    weights_record,
)
from pudlab.fl.records import RoundRecord, Weights
from pudlab.fl.rounds import Evaluate
from pudlab.io import read_json, write_bytes_atomic, write_json
from pudlab.records import Record

COSTS_FILE = "flower_costs.json"
ERROR_FILE = "flower_error.txt"


@dataclass(frozen=True)
class RoundCostRecord(Record):
    """One Flower round's cost: wall time (train, relays, challenges, T_e evaluation) and payload bytes."""

    seconds: float
    bytes: dict[str, int]
    """Payload bytes by phase (:class:`~.strategy.RoundCost`: ``model-down``, ``model-up``, ...)."""
    messages: int
    """Messages sent and received."""

    DERIVED = ("total_bytes",)

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes.values())


@dataclass(frozen=True)
class FlowerCosts(Record):
    """``STORE/<defence>/flower_costs.json``: every round's cost, by round."""

    engine: str = "flower"
    rounds: dict[int, RoundCostRecord] = field(default_factory=dict)


class FlowerRounds:
    """A :data:`pudlab.fl.simulation.RoundRunner` over Flower: one round = one strategy round."""

    def __init__(self, strategy: PudlabStrategy, grid: Grid, costs_path: Path) -> None:
        self.strategy = strategy
        self.grid = grid
        self.costs_path = costs_path

    def __call__(self, pool: ClientPool, defence: str, round_index: int, global_weights: Weights, work_dir: Path, *,
                 challenger: Any, evaluate: Evaluate) -> tuple[Weights, RoundRecord]:
        """Run round ``round_index`` through Flower; evaluate the new global model on T_e."""
        started = time.perf_counter()
        messages = self.strategy.configure_train(round_index, weights_record(global_weights), ConfigRecord(),
                                                 self.grid)
        replies = self.grid.send_and_receive(messages, timeout=self.strategy.timeout)
        arrays, _ = self.strategy.aggregate_train(round_index, replies)
        assert arrays is not None
        record = self.strategy.records[round_index]
        new_global = record_weights(arrays)
        loss, accuracy = evaluate(new_global)
        seconds = time.perf_counter() - started
        self._save_cost(round_index, seconds)
        return new_global, dataclasses.replace(record, accuracy=accuracy, loss=loss, seconds=seconds)

    def _save_cost(self, round_index: int, seconds: float) -> None:
        cost = self.strategy.costs[round_index]
        costs = (FlowerCosts.from_dict(read_json(self.costs_path), where=str(self.costs_path))
                 if self.costs_path.exists() else FlowerCosts())
        rounds = {**costs.rounds, round_index: RoundCostRecord(seconds, dict(cost.bytes), cost.messages)}
        write_json(self.costs_path, dataclasses.replace(costs, rounds=rounds).to_dict())


def run_server(grid: Grid, run_config: dict, *, log: Any = None) -> dict[str, list[RoundRecord]]:
    """Run the run config's defences into its store; the records per defence."""
    from pudlab.fl.simulation import Simulation

    spec = spec_from_json(str(run_config[SPEC_KEY]))
    store = Path(str(run_config[STORE_KEY]))
    defences = [d for d in str(run_config.get(DEFENCES_KEY, "")).split(",") if d] or list(spec.defences)
    rounds = as_int(run_config.get(ROUNDS_KEY, -1), ROUNDS_KEY)
    data_dir = str(run_config.get(DATA_DIR_KEY, "")) or None
    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    try:
        simulation = Simulation(spec, store, data_dir=data_dir, log=log)
        results = {}
        for defence in defences:
            strategy = PudlabStrategy(spec, defence, simulation.model_config,
                                      work_dir=store / defence / "flower_work")
            simulation.round_runner = FlowerRounds(strategy, grid, store / defence / COSTS_FILE)
            results[defence] = simulation.run(defence, rounds=None if rounds < 0 else rounds)
            shutil.rmtree(strategy.work_dir, ignore_errors=True)
        finish_clients(grid, spec.simulation.clients)
        return results
    except Exception as exc:
        write_bytes_atomic(store / ERROR_FILE, f"{type(exc).__name__}: {exc}\n".encode())
        raise


def finish_clients(grid: Grid, clients: int, timeout: float = 120.0) -> None:
    """``query.finish`` to every node: each removes its working folder."""
    messages = [Message(RecordDict({"config": ConfigRecord({"round": 0})}), dst_node_id=node, message_type=FINISH)
                for node in wait_for_nodes(grid, clients, timeout)]
    list(grid.send_and_receive(messages, timeout=timeout))


def make_server_app() -> ServerApp:
    """pudlab's ``ServerApp`` (the run config names the spec and the store)."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        run_server(grid, dict(context.run_config))

    return app


__all__ = ["COSTS_FILE", "ERROR_FILE", "FlowerCosts", "FlowerRounds", "RoundCostRecord", "finish_clients",
           "make_server_app", "run_server"]
