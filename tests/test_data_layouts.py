"""Image folders as users have them: ``root/<class>/*.png`` is read when it cannot be anything else,
refused with the reason when it could, and the dataset says which layout was read."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pudlab.data.images import CLASS_LAYOUT, SPLIT_LAYOUT, image_tree_layout
from pudlab.data.sources import load_source
from pudlab.errors import DatasetError


def _images(folder: Path, count: int, value: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        pixels = np.full((6, 6), value, np.uint8)
        pixels[index % 6, :] = 255 - value
        Image.fromarray(pixels).save(folder / f"{index:02d}.png")


def test_class_folders_at_the_root_are_read(tmp_path):
    for label, name in enumerate(("cat", "dog", "fox")):
        _images(tmp_path / "pets" / name, 4, 20 * label)
    assert image_tree_layout(tmp_path / "pets") == CLASS_LAYOUT
    source = load_source(tmp_path / "pets", tmp_path / "data")
    assert source.classes == ("cat", "dog", "fox") and len(source.train) == 12 and source.test is None
    assert np.bincount(source.train.labels).tolist() == [4, 4, 4]
    assert source.description == "pets (class-folder images <class>/, no test split)"


def test_split_layout_says_so(tmp_path):
    for split, count in (("train", 4), ("test", 2)):
        for label, name in enumerate(("a", "b")):
            _images(tmp_path / "tree" / split / name, count, 40 * label)
    assert image_tree_layout(tmp_path / "tree") == SPLIT_LAYOUT
    source = load_source(tmp_path / "tree", tmp_path / "data")
    assert source.description == "tree (class-folder images train/<class>/, with test/)"
    assert len(source.train) == 8 and len(source.test) == 4


@pytest.mark.parametrize(("make", "reason"), [
    (lambda root: (_images(root / "train" / "a", 2, 0), _images(root / "cat", 2, 9)),
     "ambiguous image tree: train/ suggests train/<class>/*.png, but cat/ hold images directly"),
    (lambda root: (_images(root / "cat", 2, 0), _images(root / "test", 2, 9)),
     "ambiguous image tree: test/ holds images but there is no train/"),
    (lambda root: (_images(root / "cat", 2, 0), _images(root / "dog", 2, 9), (root / "empty").mkdir()),
     "empty/ hold no image directly"),
    (lambda root: (_images(root / "cat", 2, 0), _images(root / "dog", 2, 9), _images(root, 1, 3)),
     "1 image(s) such as 00.png lie directly in the folder, outside any class folder"),
    (lambda root: _images(root / "cat", 2, 0), "only one class folder (cat/) with images"),
])
def test_ambiguous_or_partial_folders_are_refused_with_the_reason(tmp_path, make, reason):
    root = tmp_path / "images"
    root.mkdir()
    make(root)
    with pytest.raises(DatasetError, match=reason.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
        load_source(root, tmp_path / "data")


def test_obfuscate_reads_class_folders_and_names_the_layout(tmp_path):
    for label, name in enumerate(("cat", "dog")):
        _images(tmp_path / "pets" / name, 10, 30 * label)
    result = subprocess.run([sys.executable, "-m", "pudlab.cli", "--data-dir", str(tmp_path / "data"), "obfuscate",
                             str(tmp_path / "pets"), "--sigma", "0.1", "--insecure-seed", "1",
                             "--out", str(tmp_path / "release.npz")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "(class-folder images <class>/, no test split)" in result.stdout
