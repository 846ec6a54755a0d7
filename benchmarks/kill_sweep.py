"""N random SIGKILLs of a sweep's driver: jobs lost or corrupt, identical weights, total time, orphans.

    .venv/bin/python benchmarks/kill_sweep.py --kills 20 [--dataset mnist-5k]      # a reduced exp3 sweep
    .venv/bin/python benchmarks/kill_sweep.py --kills 20 -- reproduce --preset quick --no-progress

Runs the sweep once uninterrupted (reference), then again into a fresh store, killing the driver
(SIGKILL) at a uniformly random moment of each attempt until ``--kills`` kills are done, then lets it
finish. After each kill it counts processes of that attempt still alive 5 s later (workers tagged
through their environment), checks that every job finished before the kill is still finished with
the same weights, and at the end compares all weights with the reference (``pudlab compare``: every weight file loaded and
checked against its hash, series and claims too).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT = ["run", "exp3", "--epochs", "3", "--sigmas", "0,0.2,0.5,1.0", "--widths", "4,8,16", "--hidden", "32",
           "--max-train-size", "1000", "--checkpoint-seconds", "2", "--no-progress"]


def tagged(tag: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if f"PUDLAB_KILL_TAG={tag}".encode() in (entry / "environ").read_bytes().split(b"\0"):
                    state = (entry / "stat").read_text().split(")")[-1].split()[0]
                    if state != "Z":
                        found.append(int(entry.name))
            except OSError:
                pass
    return found


def done(store: Path) -> dict[str, tuple[str, float]]:
    if not (store / "pudlab.sqlite").exists():
        return {}
    try:
        with sqlite3.connect(f"file:{store / 'pudlab.sqlite'}?mode=ro", uri=True, timeout=10) as db:
            rows = db.execute("SELECT key, weights_sha256, finished FROM jobs WHERE status = 'done'").fetchall()
    except sqlite3.Error:
        return {}
    return {key: (sha, when) for key, sha, when in rows}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--dataset", default="mnist-5k")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-wait", type=float, default=0.0,
                        help="Latest kill moment per attempt in seconds [default: 2 x the uninterrupted time / kills, "
                             "so that the kills spread over the whole sweep].")
    parser.add_argument("extra", nargs="*", help="A pudlab command (without --store) replacing the default "
                                                 "reduced sweep (--dataset then does not apply).")
    args = parser.parse_args()
    command = [sys.executable, "-m", "pudlab.cli", *(args.extra or [*DEFAULT, "--dataset", args.dataset])]
    work = Path(tempfile.mkdtemp(prefix="kill_sweep_"))
    started = time.perf_counter()
    subprocess.run([*command, "--store", str(work / "reference")], check=True, capture_output=True)
    reference_seconds = time.perf_counter() - started
    reference = done(work / "reference")
    started = time.perf_counter()  # a rerun that finds every job done (imports, data, plan; reproduce: the report)
    subprocess.run([*command, "--store", str(work / "reference")], check=True, capture_output=True)
    rerun = time.perf_counter() - started
    rng = random.Random(args.seed)
    earliest, latest = 0.0, args.max_wait or 2 * reference_seconds / args.kills
    store, kills, orphans, lost, changed, attempts = work / "killed", 0, 0, 0, 0, 0
    failures: list[str] = []
    started = time.perf_counter()
    while True:
        attempts += 1
        tag = f"{os.getpid()}-{attempts}"
        process = subprocess.Popen([*command, "--store", str(store)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   env={**os.environ, "PUDLAB_KILL_TAG": tag})
        if kills >= args.kills or len(done(store)) == len(reference):
            _, err = process.communicate()
            if process.returncode != 0:
                raise SystemExit(f"final run failed: {err.decode()[-500:]}")
            break
        before = done(store)
        try:
            process.wait(timeout=rng.uniform(earliest, latest))
            _, err = process.communicate()
            if process.returncode != 0:  # an attempt that failed on its own is a finding, not a kill
                failures.append(err.decode().strip().splitlines()[-1] if err.strip() else f"exit {process.returncode}")
            continue  # finished (or nothing left) before the kill
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.communicate()
            kills += 1
        time.sleep(5)
        orphans += len(tagged(tag))
        after = done(store)
        lost += sum(1 for key in before if key not in after)
        changed += sum(1 for key, (sha, when) in before.items() if key in after and after[key] != (sha, when))
    total = time.perf_counter() - started - 5 * kills
    final = done(store)
    identical = sum(1 for key, (sha, _) in reference.items() if final.get(key, ("",))[0] == sha)
    print(f"sweep: {' '.join(command[3:])}")
    print(f"jobs {len(reference)}; kills {kills} in {attempts} attempts (kill moment uniform in "
          f"{earliest:.1f}..{latest:.1f} s; a rerun on the finished store takes {rerun:.1f} s)")
    print(f"jobs lost {lost}, finished jobs retrained or changed {changed}, corrupt {len(reference) - identical}")
    print(f"identical weights {identical}/{len(reference)}")
    print(f"uninterrupted {reference_seconds:.1f} s, with kills {total:.1f} s (excluding the 5 s orphan checks) "
          f"= {total / reference_seconds:.2f}x")
    print(f"orphaned processes 5 s after a kill: {orphans}")
    print(f"attempts that failed on their own: {len(failures)}" + "".join(f"\n  {line}" for line in failures))
    compared = subprocess.run([sys.executable, "-m", "pudlab.cli", "compare", str(work / "reference"), str(store),
                               "--json"], check=True, capture_output=True, text=True)
    summary = json.loads(compared.stdout)["summary"]
    print(f"pudlab compare reference killed: {summary['weights_identical']}/{summary['common_jobs']} weight files "
          f"identical (loaded and hash-checked), largest series difference {summary['max_series_diff']}, "
          f"claims changed {summary['claims_changed']}")
    print(f"leftover checkpoints {len(list((store / 'checkpoints').glob('*')))}, "
          f"temp files {len(list(store.rglob('.*.tmp')))}")


if __name__ == "__main__":
    main()
