"""The bad-input corpus: every case exits non-zero with one line on stderr, no traceback, and leaves the
disk as it was (no store created, no preview overwritten, no output folder)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from pudlab.cli import cli
from tests.conftest import write_npz_dataset

BASE_RUN = ["--epochs", "1", "--widths", "2,2,4", "--hidden", "8", "--threads", "1", "--workers", "1",
            "--ensemble-size", "1", "--no-progress"]
TINY_RUN = [*BASE_RUN, "--sigmas", "0,1"]


def _tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` (relative path -> SHA-256) and every folder (-> 'dir')."""
    result = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        result[rel] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return result


def _files(tmp: Path) -> dict[str, Path]:
    """The corpus' input files."""
    good = write_npz_dataset(tmp / "good.npz", num=200)
    empty = tmp / "empty.npz"
    np.savez(empty, x=np.zeros((0, 1, 16, 16), np.uint8), y=np.zeros(0, np.int64))
    noise = tmp / "noise.npz"
    noise.write_bytes(np.random.default_rng(0).bytes(4096))
    no_y = tmp / "no_y.npz"
    np.savez(no_y, x=np.zeros((10, 1, 16, 16), np.uint8))
    nan = tmp / "nan.npz"
    np.savez(nan, x=np.full((10, 1, 16, 16), np.nan, np.float32), y=np.zeros(10, np.int64))
    short_y = tmp / "short_y.npz"
    np.savez(short_y, x=np.zeros((10, 1, 16, 16), np.uint8), y=np.zeros(9, np.int64))
    bad_toml = tmp / "bad.toml"
    bad_toml.write_text("name = [unclosed\n")
    missing_key = tmp / "missing.toml"
    missing_key.write_text('name = "x"\n[datasets.A]\nsetting = "S-1-1-1"\n')
    bad_preset = tmp / "preset.toml"
    bad_preset.write_text('name = "p"\nepochs = "many"\n')
    a_file = tmp / "a_file"
    a_file.write_text("not a folder\n")
    garbage_db = tmp / "garbage"
    garbage_db.mkdir()
    (garbage_db / "pudlab.sqlite").write_bytes(b"this is not sqlite" * 100)
    no_db = tmp / "no_db"
    no_db.mkdir()
    garbage_weights = tmp / "garbage.safetensors"
    garbage_weights.write_bytes(b"\x00" * 64)
    return {"good": good, "empty": empty, "noise": noise, "no_y": no_y, "nan": nan, "short_y": short_y,
            "bad_toml": bad_toml, "missing_key": missing_key, "bad_preset": bad_preset, "a_file": a_file,
            "garbage_db": garbage_db, "no_db": no_db, "garbage_weights": garbage_weights}


RUN_CASES = {
    "sigma nan": ["--sigmas", "0,0.2,nan"],
    "sigma inf": ["--sigmas", "0,inf"],
    "sigma negative": ["--sigmas", "0,-0.5"],
    "sigma words": ["--sigmas", "a,b"],
    "sigma empty": ["--sigmas", ","],
    "epochs 0": ["--epochs", "0"],
    "epochs negative": ["--epochs", "-3"],
    "repeats 0": ["--repeats", "0"],
    "widths two": ["--widths", "8,16"],
    "widths zero": ["--widths", "0,1,2"],
    "hidden 0": ["--hidden", "0"],
    "lr 0": ["--lr", "0"],
    "lr nan": ["--lr", "nan"],
    "lr negative": ["--lr", "-1"],
    "batch negative": ["--batch-size", "-1"],
    "max train 0": ["--max-train-size", "0"],
    "snapshot every 0": ["--snapshot-every", "0"],
    "workers 0": ["--workers", "0"],
    "threads negative": ["--threads", "-1"],
    "ensemble 0": ["--ensemble-size", "0"],
    "ensemble mode": ["--ensemble-mode", "bogus"],
    "device tpu": ["--device", "tpu"],
    "executor": ["--executor", "bogus"],
    "precision": ["--precision", "fp8"],
    "checkpoint seconds": ["--checkpoint-seconds", "-5"],
    "preset name": ["--preset", "nonexistent-preset"],
    "preset file": ["--preset", "{bad_preset}"],
}
SPEC_CASES = {
    "spec name": "exp99",
    "spec toml": "{bad_toml}",
    "spec missing key": "{missing_key}",
}
DATA_CASES = {
    "dataset missing": "{tmp}/nowhere.npz",
    "dataset empty": "{empty}",
    "dataset random bytes": "{noise}",
    "dataset no y": "{no_y}",
    "dataset nan": "{nan}",
    "dataset short y": "{short_y}",
}
TRAIN_CASES = {
    "train epochs 0": ["--epochs", "0"],
    "train epochs negative": ["--epochs", "-1"],
    "train sigma nan": ["--sigma", "nan"],
    "train sigma negative": ["--sigma", "-1"],
    "train sigma inf": ["--sigma", "inf"],
    "train fraction high": ["--fraction", "1.5"],
    "train fraction negative": ["--fraction", "-0.1"],
    "train lr 0": ["--lr", "0"],
    "train batch 0": ["--batch-size", "0"],
    "train hidden 0": ["--hidden", "0"],
    "train widths": ["--widths", "1,2"],
    "train widths words": ["--widths", "a,b,c"],
    "train widths empty": ["--widths", ","],
    "train setting": ["--setting", "S-9"],
    "train labels": ["--labels", "11"],
    "train device": ["--device", "bogus"],
    "train init missing": ["--init", "{tmp}/nope.safetensors"],
    "train init garbage": ["--init", "{garbage_weights}"],
    "train precision": ["--precision", "fp8"],
}


def _cases() -> list[tuple[str, list[str]]]:
    cases = []
    for name, extra in RUN_CASES.items():
        base = BASE_RUN if "--sigmas" in extra else TINY_RUN
        cases.append((f"run {name}", ["run", "exp1", "--dataset", "{good}", "--store", "{store}", *base, *extra]))
    for name, spec in SPEC_CASES.items():
        cases.append((f"run {name}", ["run", spec, "--dataset", "{good}", "--store", "{store}", *TINY_RUN]))
    for name, data in DATA_CASES.items():
        cases.append((f"run {name}", ["run", "exp1", "--dataset", data, "--store", "{store}", *TINY_RUN]))
        cases.append((f"train {name}", ["train", data, "--epochs", "1", "--out", "{tmp}/train_out"]))
    for name, extra in TRAIN_CASES.items():
        cases.append((name, ["train", "{good}", "--widths", "2,2,4", "--hidden", "8", "--epochs", "1",
                             "--out", "{tmp}/train_out", *extra]))
    cases += [
        ("run store is a file", ["run", "exp1", "--dataset", "{good}", "--store", "{a_file}", *TINY_RUN]),
        ("run new store sigma nan", ["run", "exp1", "--dataset", "{good}", "--store", "{tmp}/new", *BASE_RUN,
                                     "--sigmas", "nan"]),
        ("run new store bad spec", ["run", "{bad_toml}", "--dataset", "{good}", "--store", "{tmp}/new", *TINY_RUN]),
        ("reproduce experiment", ["reproduce", "--experiments", "exp9", "--datasets", "{good}", "--store", "{store}",
                                  *TINY_RUN]),
        ("reproduce no experiments", ["reproduce", "--experiments", ",", "--datasets", "{good}", "--store",
                                      "{store}", *TINY_RUN]),
        ("reproduce no datasets", ["reproduce", "--experiments", "exp1", "--datasets", ",", "--store", "{store}",
                                   *TINY_RUN]),
        ("reproduce bad dataset", ["reproduce", "--experiments", "exp1", "--datasets", "{noise}", "--store",
                                   "{tmp}/new", *TINY_RUN]),
        ("reproduce preset", ["reproduce", "--preset", "nope", "--datasets", "{good}", "--store", "{store}"]),
        ("run dataset empty folder", ["run", "exp1", "--dataset", "{no_db}", "--store", "{store}", *TINY_RUN]),
        ("status missing", ["status", "{tmp}/nowhere"]),
        ("status no db", ["status", "{no_db}"]),
        ("status garbage db", ["status", "{garbage_db}"]),
        ("report no db", ["report", "{no_db}"]),
        ("report garbage db", ["report", "{garbage_db}"]),
        ("plot garbage db", ["plot", "{garbage_db}"]),
        ("plot file", ["plot", "{a_file}"]),
        ("train out is a file", ["train", "{good}", "--epochs", "1", "--out", "{a_file}"]),
        ("distance garbage", ["distance", "{garbage_weights}", "{garbage_weights}"]),
        ("distance missing", ["distance", "{tmp}/nope", "{garbage_weights}"]),
        ("datasets fetch unknown", ["--data-dir", "{tmp}/data", "datasets", "fetch", "imagenet"]),
    ]
    return cases


CASES = _cases()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Input files and an existing store (made once by a real, tiny run)."""
    tmp = tmp_path_factory.mktemp("corpus")
    files = _files(tmp)
    store = tmp / "store"
    result = CliRunner().invoke(cli, ["run", "exp1", "--dataset", str(files["good"]), "--store", str(store), *TINY_RUN])
    assert result.exit_code == 0, result.output
    return tmp, {**{name: str(path) for name, path in files.items()}, "store": str(store), "tmp": str(tmp)}


def test_corpus_size():
    assert len(CASES) >= 77


@pytest.mark.parametrize("name,args", CASES, ids=[name for name, _ in CASES])
def test_bad_input_is_one_clean_line(corpus, name, args):
    tmp, names = corpus
    argv = [arg.format(**names) for arg in args]
    before = _tree(tmp)
    result = CliRunner().invoke(cli, argv)
    stderr = result.stderr.strip()
    assert result.exit_code in (1, 2), (name, result.exit_code, result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output and "Traceback" not in stderr
    assert len(stderr.splitlines()) == 1, stderr
    assert stderr.startswith("error: "), stderr
    assert _tree(tmp) == before, f"{name} changed the disk"


def test_corrupt_idx_header_is_a_warning_not_a_size(tmp_path):
    """`pudlab datasets` on IDX files whose header claims 2^31 images: one warning line, no bogus size."""
    folder = tmp_path / "mnist"
    folder.mkdir()

    def idx(name: str, dims: tuple[int, ...], payload: bytes) -> None:
        ndim = len(dims)
        code = 0x08
        header = bytes([0, 0, code, ndim]) + b"".join(d.to_bytes(4, "big") for d in dims)
        (folder / name).write_bytes(header + payload)

    idx("train-images-idx3-ubyte", (2147483648, 2, 2), bytes(4 * 3))
    idx("train-labels-idx1-ubyte", (3,), bytes(3))
    idx("t10k-images-idx3-ubyte", (3, 2, 2), bytes(4 * 3))
    idx("t10k-labels-idx1-ubyte", (3,), bytes(3))
    before = _tree(tmp_path)
    result = CliRunner().invoke(cli, ["--data-dir", str(tmp_path), "datasets"])
    assert result.exit_code == 0, result.output
    assert "2147483648" not in result.stdout
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: mnist")]
    assert len(warnings) == 1 and "corrupt header" in warnings[0], result.stderr
    assert _tree(tmp_path) == before


def test_sigma_nan_on_existing_store_keeps_previews(corpus):
    """The issue's case: previews, plans and jobs stay exactly as they were."""
    tmp, names = corpus
    store = Path(names["store"])
    before = _tree(store)
    result = CliRunner().invoke(cli, ["run", "exp1", "--dataset", names["good"], "--store", names["store"],
                                      *BASE_RUN, "--sigmas", "0,0.2,nan"])
    assert result.exit_code != 0 and "--sigmas" in result.stderr
    assert _tree(store) == before
    assert os.listdir(store / "previews")
