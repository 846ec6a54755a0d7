"""Seeded random streams: every random choice in pudlab comes from ``derive_rng(seed, *keys)``.

A stream is identified by a root seed plus a path of keys (strings or integers), e.g.
``derive_rng(seed, "shuffle", epoch)``. Streams with different paths are independent; the same
path gives the same numbers on every machine (NumPy's SeedSequence + PCG64 are specified).
"""

from __future__ import annotations

import hashlib

import numpy as np

Key = int | str


def key_to_int(key: Key) -> int:
    """Map a key to a non-negative integer (strings through SHA-256, so it is stable)."""
    if isinstance(key, bool):
        raise TypeError("a boolean is not a seed key")
    if isinstance(key, int | np.integer):
        if key < 0:
            raise ValueError(f"seed keys must be non-negative, got {key}")
        return int(key)
    if isinstance(key, str):
        return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
    raise TypeError(f"seed key must be int or str, got {type(key).__name__}")


def seed_sequence(seed: int, *keys: Key) -> np.random.SeedSequence:
    """The SeedSequence of the stream ``(seed, *keys)``."""
    return np.random.SeedSequence([key_to_int(seed), *(key_to_int(k) for k in keys)])


def derive_rng(seed: int, *keys: Key) -> np.random.Generator:
    """An independent NumPy generator for the stream ``(seed, *keys)``."""
    return np.random.Generator(np.random.PCG64(seed_sequence(seed, *keys)))


def derive_seed(seed: int, *keys: Key) -> int:
    """A 63-bit integer seed for the stream ``(seed, *keys)`` (e.g. for a torch.Generator)."""
    return int(seed_sequence(seed, *keys).generate_state(1, np.uint64)[0] >> np.uint64(1))
