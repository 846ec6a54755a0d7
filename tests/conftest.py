"""Shared fixtures: tiny synthetic data in memory (file-format fixtures live in the data tests), and a
deadline poll for tests that wait on other processes."""

from __future__ import annotations

import functools
import http.server
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from pudlab.data import LabeledImages, SourceDataset

CLASSES = tuple(str(i) for i in range(10))


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Tiny models train fastest on one thread (and far faster on a loaded machine); the count is restored."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def make_images(num: int, shape=(1, 12, 12), *, seed: int = 0, num_classes: int = 10) -> LabeledImages:
    """Learnable synthetic images: each class is a bright bar at its own position, plus noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(num, dtype=np.int64) % num_classes
    rng.shuffle(labels)
    channels, height, width = shape
    images = rng.random((num, channels, height, width), dtype=np.float32) * 0.2
    for index, label in enumerate(labels):
        row = int(label) * height // num_classes
        images[index, :, row:row + max(1, height // num_classes), :] += 0.8
    return LabeledImages(np.clip(images, 0, 1).astype(np.float32), labels, np.arange(num, dtype=np.int64))


def wait_until(condition: Callable[[], object], timeout: float, *, interval: float = 0.05) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds have passed; whether it held.

    For waits on other processes: returns as soon as the condition holds (no fixed sleep), and a
    condition that never holds costs ``timeout`` at most. The caller asserts on the result.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True


def make_source(num: int = 600, shape=(1, 12, 12), *, seed: int = 0) -> SourceDataset:
    return SourceDataset("synthetic", "synthetic bars", make_images(num, shape, seed=seed), None, CLASSES, "memory")


@pytest.fixture
def tiny_source() -> SourceDataset:
    return make_source()


def write_npz_dataset(path, num: int = 600, shape=(1, 16, 16), *, seed: int = 0):
    """A small learnable dataset as a real ``.npz`` file (x uint8 NCHW, y int64)."""
    data = make_images(num, shape, seed=seed)
    np.savez(path, x=(data.images * 255).round().astype(np.uint8), y=data.labels)
    return path


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder served over HTTP on the loopback interface by a thread: (folder, base URL)."""
    root = tmp_path / "served"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def npz_dataset(tmp_path):
    return str(write_npz_dataset(tmp_path / "tiny.npz"))
