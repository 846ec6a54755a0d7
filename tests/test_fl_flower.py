"""The Flower engine: same spec, same seeds, same global models as pudlab's engine.

Needs the flower extra (``pip install 'pudlab[flower]'``); every test here is skipped without it.
The fast tests deliver Flower's messages in process (:class:`InProcessGrid`: pudlab's ServerApp
logic and ClientApp, Flower's message types, no runtime); the slow ones run Flower's simulation
runtime (Ray) and its deployment runtime (a SuperLink and SuperNodes on 127.0.0.1).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("flwr", reason="the flower extra is not installed (pip install 'pudlab[flower]')")

from flwr.app import ArrayRecord, Context, Message, RecordDict
from flwr.serverapp import Grid
from flwr.supercore.task_identity import TaskIdentity

from pudlab.config import read_toml
from pudlab.errors import BundleError
from pudlab.fl.flower import flower_missing
from pudlab.fl.flower.client_app import make_client_app
from pudlab.fl.flower.server_app import COSTS_FILE, FlowerCosts, run_server
from pudlab.fl.flower.strategy import REJECTION_CODES, rejection_code
from pudlab.fl.flower.transport import (
    DATA_DIR_KEY,
    DEFENCES_KEY,
    ROUNDS_KEY,
    SPEC_KEY,
    STORE_KEY,
    bundle_record,
    spec_from_json,
    spec_to_json,
    write_bundle,
)
from pudlab.fl.simulation import run_simulation
from pudlab.fl.spec_reader import load_spec, spec_from_dict
from pudlab.fl.store import SimulationStore, spec_sha256
from pudlab.io import read_json

from .conftest import write_npz_dataset
from .test_fl import _cli, tiny_spec, without_timings


class InProcessGrid(Grid):
    """A Grid that hands every message straight to a ClientApp in this process (replies in reverse order)."""

    def __init__(self, clients: int, run_config: dict) -> None:
        self.app = make_client_app()
        work = str(Path(run_config[STORE_KEY]).parent / "nodes")  # the clients' working folders
        self.contexts = {100 + k: Context(run_id=7, node_id=100 + k, node_config={"partition-id": k, "work-dir": work},
                                          state=RecordDict(), run_config=run_config) for k in range(clients)}
        self.sent: list[str] = []

    def set_run(self, run_id):  # type: ignore[no-untyped-def]
        pass

    @property
    def run(self):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def create_message(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def get_node_ids(self):  # type: ignore[no-untyped-def]
        return list(self.contexts)

    def get_nodes(self):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def push_messages(self, messages):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def pull_messages(self, message_ids):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def send_and_receive(self, messages, *, timeout=None):  # type: ignore[no-untyped-def]
        replies = []
        for message in reversed(list(messages)):
            self.sent.append(message.metadata.message_type)
            replies.append(self.app(message, self.contexts[message.metadata.dst_node_id]))
        return replies


@pytest.fixture
def flower_identity(monkeypatch):
    """Flower's process-wide task identity, which Message() reads (set by its runtimes)."""
    for name, value in (("_task_id", 1), ("_run_id", 7), ("_node_id", 1)):
        monkeypatch.setattr(TaskIdentity, name, value)


def flower_spec(tmp_path: Path, **sections):
    """tiny_spec on a real .npz file (every Flower process loads the dataset by name)."""
    data = tiny_spec(**sections)
    data["simulation"]["dataset"] = str(write_npz_dataset(tmp_path / "tiny.npz"))
    return spec_from_dict(data, str(tmp_path / "tiny.toml"))


def run_config(spec, store: Path, defences=()) -> dict:
    return {SPEC_KEY: spec_to_json(spec), STORE_KEY: str(store), DEFENCES_KEY: ",".join(defences),
            ROUNDS_KEY: -1, DATA_DIR_KEY: ""}


def assert_same_runs(spec, left: Path, right: Path, defences) -> None:
    """Bit-identical global models after every round, identical records (timings aside)."""
    a, b = SimulationStore(left), SimulationStore(right)
    for defence in defences:
        records_a, records_b = a.load_records(defence), b.load_records(defence)
        assert len(records_a) == spec.simulation.rounds + 1
        assert without_timings(records_a) == without_timings(records_b)
        for round_index in range(spec.simulation.rounds + 1):
            weights_a, weights_b = a.load_global(defence, round_index), b.load_global(defence, round_index)
            assert list(weights_a) == list(weights_b)
            assert all(torch.equal(weights_a[name], weights_b[name]) for name in weights_a), (defence, round_index)


THIEF_AND_FLIPPER = [{"kind": "sign_flip", "clients": [2], "scale": 4.0},
                     {"kind": "thief", "clients": [3], "victim": 0}]


# ------------------------------------------------------------------------------------ transport
def test_spec_survives_the_run_config():
    shipped = load_spec("mnist5k_noniid")
    again = spec_from_json(spec_to_json(shipped))
    assert again == shipped and spec_sha256(again) == spec_sha256(shipped)


def test_bundle_travels_file_by_file_and_hostile_paths_are_refused(tmp_path):
    bundle = tmp_path / "bundle"
    (bundle / "checkpoints").mkdir(parents=True)
    (bundle / "manifest.json").write_bytes(b'{"a": 1}')
    (bundle / "checkpoints" / "step_1.safetensors").write_bytes(bytes(range(256)))
    record = bundle_record(bundle)
    assert list(record) == ["checkpoints/step_1.safetensors", "manifest.json"]
    copy = write_bundle(record, tmp_path / "copy")
    assert (copy / "checkpoints" / "step_1.safetensors").read_bytes() == bytes(range(256))
    with pytest.raises(BundleError, match="must be new"):
        write_bundle(record, copy)
    hostile = ArrayRecord({"../escape": record["manifest.json"]})
    with pytest.raises(BundleError, match="not a plain relative path"):
        write_bundle(hostile, tmp_path / "hostile")
    assert not (tmp_path / "escape").exists()


def test_missing_extra_is_named(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "ray" else real(name))
    assert "ray" in flower_missing() and "pudlab[flower]" in flower_missing()


def test_rejection_codes_cover_the_challenge_reasons():
    assert rejection_code("no proof bundle") == 1
    assert rejection_code("the bundle claims local training {...}") == 2
    assert rejection_code("adam-bound check failed: checkpoint 2 ...") == 3
    assert rejection_code("1 of 1 replayed segments (...) do not reproduce their checkpoint; ...") == 4
    assert set(REJECTION_CODES) == {1, 2, 3, 4}


# ------------------------------------------------------------------------------------ same rounds, in process
def test_flower_messages_reach_the_pudlab_engine_bit_for_bit(tmp_path, flower_identity):
    """A thief and a sign-flipper under PoL (sigma > 0) and Multi-Krum: same models, records, verdicts."""
    spec = flower_spec(tmp_path, simulation={"clients": 4, "rounds": 2, "defence": "both"},
                       aggregation={"f": 0}, pol={"sigma": 0.1, "top_q": 1}, adversaries=THIEF_AND_FLIPPER)
    defences = ("both",)
    run_simulation(spec, tmp_path / "pudlab", defences=defences)
    grid = InProcessGrid(spec.simulation.clients, run_config(spec, tmp_path / "flower", defences))
    results = run_server(grid, run_config(spec, tmp_path / "flower", defences), log=lambda message: None)
    assert_same_runs(spec, tmp_path / "pudlab", tmp_path / "flower", defences)
    pol_round = results["both"][1]
    assert pol_round.pol is not None and set(pol_round.pol.rejected) == {2}  # the sign-flipper caught
    # the thief's straight line on this tiny training is as undecidable as an honest client (both engines)
    verdicts = {o.client: o for o in pol_round.pol.outcomes}
    assert verdicts[3].reason.startswith("undecidable at sigma 0.1") and verdicts[0].reason.startswith("undecidable")
    assert grid.sent.count("train.adapt") == 2 * len(defences)  # the thief, once per round
    assert grid.sent.count("query.pol") == spec.simulation.clients * spec.simulation.rounds
    stored = read_json(tmp_path / "flower" / "both" / COSTS_FILE)
    assert FlowerCosts.from_dict(stored).to_dict() == stored and sorted(stored["rounds"]) == ["1", "2"]
    costs = stored["rounds"]["1"]
    assert costs["bytes"]["pol-up"] > costs["bytes"]["model-up"] > 0
    assert costs["total_bytes"] == sum(costs["bytes"].values())
    assert not (tmp_path / "flower" / "both" / "flower_work").exists()  # received bundles removed
    assert not (tmp_path / "nodes" / "pudlab-flower-7").exists()  # query.finish: the clients cleaned up


def test_adaptive_attackers_run_as_flower_clients(tmp_path, flower_identity):
    """ALIE and sample-count inflation, crafted client-side from the relayed round: same as pudlab's engine."""
    spec = flower_spec(tmp_path, simulation={"clients": 5, "rounds": 1, "defence": "none"},
                       aggregation={"rule": "median", "f": 1},
                       adversaries=[{"kind": "alie", "clients": [1, 2]}, {"kind": "inflate", "clients": [3]}])
    run_simulation(spec, tmp_path / "pudlab", defences=("none",))
    config = run_config(spec, tmp_path / "flower", ("none",))
    grid = InProcessGrid(spec.simulation.clients, config)
    run_server(grid, config, log=lambda message: None)
    assert_same_runs(spec, tmp_path / "pudlab", tmp_path / "flower", ("none",))
    store = SimulationStore(tmp_path / "flower")
    inflated = next(c for c in store.load_records("none")[1].clients or () if c.client == 3)
    assert inflated.claimed_samples == 10 * store.read_meta()["setup"]["clients"][3]["samples"]
    assert grid.sent.count("train.adapt") == 3


def test_strategy_metrics_name_rejected_clients(tmp_path, flower_identity):
    from pudlab.fl.flower.strategy import PudlabStrategy
    from pudlab.fl.flower.transport import weights_record
    from pudlab.fl.simulation import Simulation

    spec = flower_spec(tmp_path, simulation={"clients": 3, "rounds": 1, "defence": "pol"},
                       aggregation={"f": 0}, adversaries=[{"kind": "sign_flip", "clients": [1]}])
    simulation = Simulation(spec, tmp_path / "unused")
    strategy = PudlabStrategy(spec, "pol", simulation.model_config, work_dir=tmp_path / "work")
    grid = InProcessGrid(3, run_config(spec, tmp_path / "unused"))
    from flwr.app import ConfigRecord

    messages = strategy.configure_train(1, weights_record(simulation.initial_weights), ConfigRecord(), grid)
    arrays, metrics = strategy.aggregate_train(1, grid.send_and_receive(messages))
    assert list((tmp_path / "nodes" / "pudlab-flower-7").glob("client_*/round_0001/client_*/manifest.json"))
    assert arrays is not None and metrics is not None
    assert metrics["rejected-clients"] == [1] and metrics["rejection-codes"] == [3]
    assert metrics["aggregated-clients"] == [0, 2] and metrics["accepted"] == 2
    assert strategy.records[1].pol is not None and "check failed" in strategy.records[1].pol.outcomes[1].reason
    assert strategy.configure_evaluate(1, arrays, ConfigRecord(), grid) == []


def test_a_client_without_partition_is_refused(tmp_path, flower_identity):
    spec = flower_spec(tmp_path, simulation={"clients": 2})
    app = make_client_app()
    context = Context(run_id=7, node_id=5, node_config={}, state=RecordDict(),
                      run_config=run_config(spec, tmp_path / "store"))
    message = Message(RecordDict(), dst_node_id=5, message_type="train")
    reply_or_error = None
    try:
        reply_or_error = app(message, context)
    except Exception as exc:  # the ClientApp raises; Flower's runtimes turn it into an error reply
        reply_or_error = exc
    assert "partition-id" in str(reply_or_error)


def test_cli_writes_a_flower_app_for_flwr_run(tmp_path):
    done = _cli("fl", "flower-app", "mnist5k_noniid", "--out", "app", "--store", "runs", "--rounds", "3",
                "--defence", "pol", "--superlink", "127.0.0.1:9300", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    project = read_toml(tmp_path / "app" / "pyproject.toml")
    assert project["tool"]["flwr"]["app"]["components"]["serverapp"] == "pudlab.fl.flower.apps:server_app"
    config = project["tool"]["flwr"]["app"]["config"]
    assert config[ROUNDS_KEY] == 3 and config[DEFENCES_KEY] == "pol" and config[STORE_KEY] == str(tmp_path / "runs")
    assert spec_from_json(config[SPEC_KEY]).simulation.defence == "pol"
    home = read_toml(tmp_path / "app" / "flwr_home" / "config.toml")
    assert home["superlink"]["pudlab"] == {"address": "127.0.0.1:9300", "insecure": True}
    bad = _cli("fl", "flower-app", "mnist5k_noniid", "--out", "app2", "--store", "runs", "--superlink", "10.0.0.1:9",
               cwd=tmp_path)
    assert bad.returncode != 0 and "loopback only" in bad.stderr


# ------------------------------------------------------------------------------------ Flower's runtimes
@pytest.mark.slow
@pytest.mark.flower
def test_flower_simulation_runtime_equals_pudlab_engine(tmp_path):
    """pudlab fl simulate --engine flower on a tiny spec: Ray simulation runtime vs pudlab's engine."""
    spec_file = tmp_path / "tiny.toml"
    data = write_npz_dataset(tmp_path / "tiny.npz")
    spec_file.write_text(
        f'[simulation]\ndataset = "{data}"\nclients = 3\nrounds = 2\nseed = 3\ndefence = "pol"\n'
        '[sampling]\nsetting = "S-1-1-0.15"\n[model]\nwidths = [4, 8, 8]\nhidden = 16\n'
        '[training]\nbatch_size = 16\nlr = 3e-3\n[aggregation]\nf = 0\n'
        '[pol]\nsigma = 0.1\ncheckpoint_every = 2\ntop_q = 1\nutility_epochs = 0\n'
        '[[adversaries]]\nkind = "thief"\nclients = [2]\nvictim = 0\n')
    summaries = {}
    for engine in ("pudlab", "flower"):
        done = _cli("fl", "simulate", "tiny.toml", "--store", engine, "--engine", engine, "--json", "--no-report",
                    cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        summaries[engine] = json.loads(done.stdout)
    assert summaries["flower"]["engine"] == "flower"
    assert summaries["flower"]["defences"] == summaries["pudlab"]["defences"]
    spec = load_spec(spec_file)
    assert_same_runs(spec, tmp_path / "pudlab", tmp_path / "flower", ("pol",))
    assert (tmp_path / "flower" / "pol" / COSTS_FILE).exists()


@pytest.mark.slow
@pytest.mark.flower
def test_flower_deployment_superlink_and_supernodes_equal_the_simulation(tmp_path):
    """The docs' recipe: a SuperLink and two SuperNodes on 127.0.0.1, pudlab's apps, `flwr run`."""
    from pudlab.fl.flower.engine import run_flower
    from pudlab.fl.flower.launch import process_tree

    spec = flower_spec(tmp_path, simulation={"clients": 2, "rounds": 1, "defence": "pol"},
                       aggregation={"f": 0}, pol={"sigma": 0.1, "top_q": 1})
    run_simulation(spec, tmp_path / "pudlab", defences=("pol",))
    lines: list[str] = []
    run_flower(spec, tmp_path / "deployed", runtime="deployment", log=lines.append, work_dir=tmp_path / "flower",
               timeout=540)
    assert_same_runs(spec, tmp_path / "pudlab", tmp_path / "deployed", ("pol",))
    assert any("[pol] round 1" in line for line in lines)
    for log in ("superlink", "supernode_0", "supernode_1"):
        assert (tmp_path / "flower" / f"{log}.log").exists()
    leftovers = [pid for pid in process_tree([1]) if str(tmp_path) in _command_of(pid)]
    assert not leftovers


def _command_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
