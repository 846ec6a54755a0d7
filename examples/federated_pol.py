"""Federated learning with Proof-of-Learning challenges on obfuscated data, then its summary.

    python examples/federated_pol.py --store runs/fl_example              # the shipped mnist5k_noniid spec
    python examples/federated_pol.py --store /tmp/fl --tiny d.npz          # two rounds on your own small .npz

The server challenges each client's update with a PoL replay on the client's shared O(T); the
Byzantine clients and the model thief of the spec are caught by the challenges (docs/fl.md).
"""

from __future__ import annotations

import argparse

import pudlab


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True, help="Simulation store to write (and resume).")
    parser.add_argument("--rounds", type=int, default=None, help="Rounds [the spec's].")
    parser.add_argument("--tiny", metavar="DATASET", help="Two small rounds on this dataset instead of mnist-5k.")
    args = parser.parse_args(argv)

    overrides = [("simulation", "defence", "pol"), ("simulation", "workers", 1)]
    if args.tiny:
        overrides += [("simulation", "dataset", args.tiny), ("simulation", "rounds", 2),
                      ("model", "widths", [4, 8, 8]), ("model", "hidden", 16), ("training", "local_epochs", 1),
                      ("training", "batch_size", 16), ("training", "lr", 3e-3), ("pol", "utility_epochs", 0),
                      ("pol", "checkpoint_every", 2), ("pol", "calibration_replays", 1)]
    spec = pudlab.load_spec("mnist5k_noniid", overrides)
    records = pudlab.run_simulation(spec, args.store, rounds=args.rounds)
    for defence, rounds in records.items():
        caught = sum(r.pol.cheaters_caught for r in rounds if r.pol is not None)
        cheaters = sum(r.pol.cheaters_challenged for r in rounds if r.pol is not None)
        wrong = sum(r.pol.honest_wrongly_rejected for r in rounds if r.pol is not None)
        honest = sum(r.pol.honest_challenged for r in rounds if r.pol is not None)
        print(f"{defence}: {len(rounds) - 1} rounds, final global accuracy {rounds[-1].accuracy:.3f}; PoL caught "
              f"{caught} of {cheaters} cheating updates, rejected {wrong} of {honest} honest ones")


if __name__ == "__main__":
    main()
