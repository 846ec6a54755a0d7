"""``pudlab fl simulate SPEC --engine flower``: a spec run by Flower, into a pudlab store.

:func:`run_flower` starts a private SuperLink on a free loopback port and submits pudlab's Flower
App (:mod:`.apps`) with ``flwr run``:

* ``runtime="simulation"``: the SuperLink's simulation runtime runs the ``ServerApp`` and one
  virtual SuperNode per client, whose ``ClientApp`` calls run in Ray actors
  (``client-resources-num-cpus = 1``, ``[simulation] workers`` CPUs for Ray: that many clients
  train at once);
* ``runtime="deployment"``: the SuperLink's deployment runtime and one real
  ``flower-supernode`` process per client (``partition-id = k``), all on 127.0.0.1.

The ServerApp writes the store (:mod:`.server_app`); this driver waits for ``flwr run`` to end,
stops every process it started, and reads the records back. A failed run raises
:class:`~pudlab.fl.flower.FlowerError` with the ServerApp's one-line error (or the log's tail).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pudlab.fl.flower import FlowerError, require_flower
from pudlab.fl.records import RoundRecord
from pudlab.fl.spec import DEFENCES, SimulationSpec
from pudlab.fl.store import SimulationStore

if TYPE_CHECKING:
    from pudlab.fl.flower.launch import FlowerProcesses

RUNTIMES = ("simulation", "deployment")


def run_flower(spec: SimulationSpec, store: str | Path, *, defences: Sequence[str] | None = None,
               rounds: int | None = None, data_dir: str | None = None, log: Callable[[str], None] | None = None,
               runtime: str = "simulation", timeout: float = 6 * 3600.0,
               work_dir: str | Path | None = None) -> dict[str, list[RoundRecord]]:
    """Run (or resume) each defence of ``spec`` through Flower into ``store``; records per defence.

    ``log`` receives ``flwr run``'s streamed output (the ServerApp's round lines among it).
    ``work_dir`` (default: a temporary folder, removed after) holds FLWR_HOME, the generated
    app, the process logs and the SuperNodes' working folders.
    """
    require_flower()
    from pudlab.fl.flower.server_app import ERROR_FILE

    if runtime not in RUNTIMES:
        raise FlowerError(f"unknown Flower runtime {runtime!r}; expected one of {', '.join(RUNTIMES)}")
    chosen = list(defences or spec.defences)
    unknown = [d for d in chosen if d not in DEFENCES]
    if unknown:
        raise FlowerError(f"unknown defence(s) {unknown}; known: {', '.join(DEFENCES)}")
    store = Path(store).resolve()
    store.mkdir(parents=True, exist_ok=True)
    (store / ERROR_FILE).unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="pudlab-flower-") as temporary:
        folder = Path(work_dir).resolve() if work_dir is not None else Path(temporary)
        folder.mkdir(parents=True, exist_ok=True)
        status, tail, seconds = _launch(spec, folder, app_config(spec, store, chosen, rounds, data_dir), runtime,
                                        timeout, log)
    _check_finished(spec, store, chosen, rounds, status, tail, seconds)
    sim_store = SimulationStore(store)
    return {defence: sim_store.load_records(defence) for defence in chosen}


def app_config(spec: SimulationSpec, store: Path, defences: Sequence[str], rounds: int | None,
               data_dir: str | None) -> dict[str, str | int]:
    """The Flower App's run config (:mod:`.transport` keys) for ``spec`` into ``store``."""
    from pudlab.fl.flower.transport import (
        DATA_DIR_KEY,
        DEFENCES_KEY,
        ROUNDS_KEY,
        SPEC_KEY,
        STORE_KEY,
        spec_to_json,
    )

    return {SPEC_KEY: spec_to_json(spec), STORE_KEY: str(Path(store).resolve()), DEFENCES_KEY: ",".join(defences),
            ROUNDS_KEY: -1 if rounds is None else int(rounds),
            DATA_DIR_KEY: str(Path(data_dir).resolve()) if data_dir else ""}


def _launch(spec: SimulationSpec, folder: Path, run_config: dict[str, str | int], runtime: str, timeout: float,
            log: Callable[[str], None] | None) -> tuple[int, str, float]:
    """SuperLink (and SuperNodes), ``flwr run``, cleanup: (flwr run's status, its log tail, seconds)."""
    from pudlab.fl.flower.launch import (
        CONNECTION,
        FlowerProcesses,
        flower_command,
        flower_env,
        free_port,
        write_app,
        write_flower_home,
    )

    home, port = folder / "flwr_home", free_port()
    write_flower_home(home, port)
    app = write_app(folder / "app", run_config)
    with FlowerProcesses(folder, flower_env(home)) as processes:
        superlink = [flower_command("flower-superlink"), "--insecure", "--host", "127.0.0.1", "--port", str(port),
                     "--disable-runtime-dependency-installation"]
        processes.start("superlink", superlink + (["--simulation"] if runtime == "simulation" else []))
        processes.wait_ready("superlink", f"http://127.0.0.1:{port}/health")
        command = [flower_command("flwr"), "run", str(app), CONNECTION, "--stream"]
        clients = spec.simulation.clients
        if runtime == "simulation":
            command += ["--federation-config", f"num-supernodes={clients} client-resources-num-cpus=1 "
                                               f"init-args-num-cpus={max(1, spec.simulation.workers)}"]
        else:
            start_supernodes(processes, clients, port, folder / "nodes")
        started = time.perf_counter()
        status = processes.follow("flwr_run", command, timeout=timeout, echo=log)
        return status, processes.tail("flwr_run", 3), time.perf_counter() - started


def start_supernodes(processes: FlowerProcesses, clients: int, port: int, work: Path) -> None:
    """One ``flower-supernode`` per client on 127.0.0.1 (``partition-id = k``, its own ClientApp port)."""
    from pudlab.fl.flower.launch import flower_command, free_port

    for client in range(clients):
        config = f'partition-id={client} num-partitions={clients} work-dir="{work}"'
        processes.start(f"supernode_{client}", [
            flower_command("flower-supernode"), "--insecure", "--superlink", f"127.0.0.1:{port}",
            "--host", "127.0.0.1", "--port", str(free_port()), "--node-config", config, "--max-wait-time", "120"])


def _check_finished(spec: SimulationSpec, store: Path, defences: Sequence[str], rounds: int | None, status: int,
                    tail: str, seconds: float) -> None:
    """Raise a :class:`FlowerError` unless every defence reached its rounds in the store."""
    from pudlab.fl.flower.server_app import ERROR_FILE

    target = spec.simulation.rounds if rounds is None else rounds
    sim_store = SimulationStore(store)
    short = [d for d in defences if sim_store.completed_rounds(d) < target]
    if not short:
        return
    error = store / ERROR_FILE
    reason = (error.read_text().strip() if error.exists()
              else f"flwr run exited with status {status}; its last lines: {' | '.join(tail.splitlines())}")
    raise FlowerError(f"the Flower run stopped after {seconds:.0f} s before defence(s) {short} reached round "
                      f"{target}: {reason}")


__all__ = ["RUNTIMES", "app_config", "run_flower", "start_supernodes"]
