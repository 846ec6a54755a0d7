"""pudlab's Flower ``ClientApp``: one federated client per SuperNode.

A node is client ``k`` = its ``partition-id`` (Flower's simulation runtime sets it; a deployed
SuperNode is started with ``--node-config "partition-id=k num-partitions=n"``). It reads the spec
from the run config, loads the spec's dataset, draws the same partition as pudlab's engine
(:func:`pudlab.fl.partition.partition_clients`) and keeps only its own T_k in use. Its O(T_k)
uses the noise key ``(seed, "pol-noise", k)`` as in pudlab's engine, unless the node is given its
own secret: ``--node-config "noise-seed=..."`` (then only that node can regenerate its noise).

Messages it answers (:mod:`.transport`):

* ``train``: local training from the round's global model (the role's behaviour:
  :meth:`pudlab.fl.clients.ClientPool.submission`); with ``prove`` the training is logged as a proof
  bundle under the node's working folder, kept until the next round. Thieves and adaptive attackers
  reply ``pending``;
* ``train.adapt``: the round's other submissions (the omniscient attacker's knowledge): a thief
  copies its victim, adaptive attackers craft their model with
  :func:`pudlab.fl.rounds.adapt_submissions`, and each forges the bundle it will show;
* ``query.pol``: a PoL challenge: the reply is the round's bundle, file by file;
* ``query.finish``: the run is over; the working folder is removed.

Working folder: ``node_config["work-dir"]`` or the system temp folder, then
``pudlab-flower-<run id>/client_<k>/round_<r>/``.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from pudlab.fl.adversaries import ADAPTIVE_ROLES
from pudlab.fl.clients import ClientPool
from pudlab.fl.flower import FlowerError
from pudlab.fl.flower.transport import (
    DATA_DIR_KEY,
    SPEC_KEY,
    array_record,
    as_int,
    bundle_record,
    config_record,
    oracle_submissions,
    record_weights,
    spec_from_json,
    submission_content,
)
from pudlab.fl.partition import ClientData
from pudlab.fl.records import Submission, Weights
from pudlab.fl.rounds import adapt_submissions
from pudlab.fl.spec import SimulationSpec
from pudlab.model import ModelConfig
from pudlab.train.trainer import torch_threads

STATE_KEY = "pudlab"
"""The node's ``Context.state`` ConfigRecord: ``bundle-round``, ``bundle`` (path of its last bundle)."""


class NodePool(ClientPool):
    """A :class:`ClientPool` whose clients may hold their own noise keys (``noise-seed`` per node)."""

    def __init__(self, spec: SimulationSpec, model_config: ModelConfig, members: Sequence[ClientData]) -> None:
        super().__init__(spec, model_config, members)
        self.secret_seeds: dict[int, int] = {}

    def noise_seed(self, client: int) -> int:
        return self.secret_seeds.get(client, super().noise_seed(client))


@dataclass
class ClientRuntime:
    """What a process serving client nodes keeps between messages: the pool of each run's spec.

    Loading the dataset and drawing the partitions takes about a second; a simulation worker
    serves many messages, so the pool is built once per (spec, data folder).
    """

    pools: dict[tuple[str, str], NodePool] = field(default_factory=dict)

    def pool(self, context: Context) -> tuple[NodePool, int]:
        """(the pool of this run's spec, this node's client index)."""
        spec_json = str(context.run_config[SPEC_KEY])
        data_dir = str(context.run_config.get(DATA_DIR_KEY, ""))
        key = (spec_json, data_dir)
        if key not in self.pools:
            self.pools[key] = _build_pool(spec_from_json(spec_json), data_dir or None)
        pool = self.pools[key]
        client = node_client(context, pool.spec)
        if "noise-seed" in context.node_config:
            pool.secret_seeds[client] = as_int(context.node_config["noise-seed"], "node config noise-seed")
        return pool, client


def _build_pool(spec: SimulationSpec, data_dir: str | None) -> NodePool:
    from pudlab.data.dataset import split_train_eval
    from pudlab.data.sources import load_source
    from pudlab.fl.partition import partition_clients

    source = load_source(spec.simulation.dataset, data_dir)
    split = split_train_eval(source, eval_fraction=spec.simulation.eval_fraction, seed=spec.simulation.split_seed)
    widths = spec.model.widths
    model_config = ModelConfig(source.sample_shape, (widths[0], widths[1], widths[2]), spec.model.hidden,
                               source.num_classes)
    return NodePool(spec, model_config, partition_clients(spec, split.train, source.num_classes))


def node_client(context: Context, spec: SimulationSpec) -> int:
    """The node's client index (``partition-id``), checked against the spec's client count."""
    if "partition-id" not in context.node_config:
        raise FlowerError("this SuperNode has no partition-id: start it with "
                          "--node-config \"partition-id=K num-partitions=N\"")
    client = as_int(context.node_config["partition-id"], "node config partition-id")
    if not 0 <= client < spec.simulation.clients:
        raise FlowerError(f"partition-id {client} is outside the spec's {spec.simulation.clients} clients")
    return client


def _work_dir(context: Context, client: int) -> Path:
    base = Path(str(context.node_config.get("work-dir", tempfile.gettempdir())))
    return base / f"pudlab-flower-{context.run_id}" / f"client_{client:03d}"


def _round_dir(context: Context, client: int, round_index: int) -> Path:
    """This round's folder; folders of earlier rounds are removed (their bundles can no longer be asked for)."""
    work = _work_dir(context, client)
    if work.exists():
        for old in work.iterdir():
            shutil.rmtree(old, ignore_errors=True)
    return work / f"round_{round_index:04d}"


def _remember_bundle(context: Context, round_index: int, bundle: Path | None) -> None:
    context.state[STATE_KEY] = ConfigRecord({"bundle-round": round_index, "bundle": "" if bundle is None else str(bundle)})


def _reply(message: Message, content: RecordDict) -> Message:
    return Message(content, reply_to=message)


def make_client_app(runtime: ClientRuntime | None = None) -> ClientApp:
    """pudlab's ``ClientApp`` (a fresh :class:`ClientRuntime` unless one is given)."""
    runtime = runtime or ClientRuntime()
    app = ClientApp()

    @app.train()
    def train(message: Message, context: Context) -> Message:
        pool, client = runtime.pool(context)
        config = config_record(message.content, "config")
        round_index = as_int(config["round"], "round")
        proof_dir = _round_dir(context, client, round_index) if bool(config["prove"]) else None
        role = pool.role(client, round_index)
        claimed = len(pool.members[client].data)
        if role == "thief":  # copies another client's model of this round: waits for it
            _remember_bundle(context, round_index, None)
            return _reply(message, submission_content(None, client=client, role=role, claimed_samples=claimed,
                                                      pending=True))
        with torch_threads(pool.spec.simulation.threads):
            submission = pool.submission(client, round_index, record_weights(array_record(message.content, "arrays")),
                                         proof_dir=proof_dir)
        _remember_bundle(context, round_index, submission.bundle)
        return _reply(message, submission_content(submission, client=client, role=role, claimed_samples=claimed,
                                                  pending=role in ADAPTIVE_ROLES))

    @app.train("adapt")
    def adapt(message: Message, context: Context) -> Message:
        pool, client = runtime.pool(context)
        config = config_record(message.content, "config")
        round_index = as_int(config["round"], "round")
        prove = bool(config["prove"])
        global_weights = record_weights(array_record(message.content, "arrays"))
        others = oracle_submissions(message.content)
        role = pool.role(client, round_index)
        with torch_threads(pool.spec.simulation.threads):
            if role == "thief":
                proof_dir = _round_dir(context, client, round_index) if prove else None
                submission = pool.submission(client, round_index, global_weights, proof_dir=proof_dir, others=others)
            else:
                submission = _adapted(pool, client, round_index, global_weights, others, _own_bundle(context, round_index))
        _remember_bundle(context, round_index, submission.bundle)
        return _reply(message, submission_content(submission, client=client, role=role,
                                                  claimed_samples=submission.claimed_samples, pending=False))

    @app.query("pol")
    def challenge(message: Message, context: Context) -> Message:
        round_index = as_int(config_record(message.content, "config")["round"], "round")
        bundle = _own_bundle(context, round_index)
        if bundle is None or not bundle.is_dir():
            return _reply(message, RecordDict({"config": ConfigRecord({"error": f"no proof bundle of round {round_index}"})}))
        return _reply(message, RecordDict({"bundle": bundle_record(bundle)}))

    @app.query("finish")
    def finish(message: Message, context: Context) -> Message:
        _, client = runtime.pool(context)
        shutil.rmtree(_work_dir(context, client).parent, ignore_errors=True)
        return _reply(message, RecordDict({"arrays": ArrayRecord()}))

    return app


def _own_bundle(context: Context, round_index: int) -> Path | None:
    """The bundle this node logged in ``round_index`` (None: none, or of another round)."""
    if STATE_KEY not in context.state:
        return None
    state = config_record(context.state, STATE_KEY)
    if as_int(state["bundle-round"], "bundle-round") != round_index or not state["bundle"]:
        return None
    return Path(str(state["bundle"]))


def _adapted(pool: ClientPool, client: int, round_index: int, global_weights: Weights, others: dict[int, Submission],
             bundle: Path | None) -> Submission:
    """An adaptive attacker's submission: :func:`adapt_submissions` over the round's submissions in
    client order (its own with its bundle), as pudlab's engine computes it for every colluder."""
    if client not in others:
        raise FlowerError(f"client {client}: the round's submissions do not include its own")
    others[client].bundle = bundle
    ordered = [others[c] for c in sorted(others)]
    adapted = adapt_submissions(pool, round_index, global_weights, ordered)
    return adapted[sorted(others).index(client)]


__all__ = ["ClientRuntime", "NodePool", "make_client_app", "node_client"]
