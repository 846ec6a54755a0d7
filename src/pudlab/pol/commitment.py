"""The prover's commitment to its whole trajectory: a Merkle root over the segments.

Leaf ``i`` commits to segment ``i`` as it is stored: its steps ``[start, end)``, Adam's step count at
its end, the SHA-256 of the file of its start state (``initial.safetensors`` for segment 0) and of its
end checkpoint (weights and both Adam moments), and the SHA-256 of its rows of ``batches.npy`` (the
sample positions of every step). The root (``trajectory.root`` in the manifest) fixes every
checkpoint, every moment and every batch before the verifier draws the segments it replays from its
own secret randomness; a segment opened later (an interactive verifier that fetches only the drawn
segments) is checked against the root with :func:`verify_path`.

Hashing: ``leaf = SHA-256(0x00 || "pudlab.pol.segment/1" || fields)``, ``node = SHA-256(0x01 || left
|| right)``; an odd node at the end of a level is promoted unchanged. Domain separation (0x00 / 0x01)
keeps a leaf from passing as a node.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence

import numpy as np

SCHEME = "merkle-sha256/pudlab-segments-v1"
"""``trajectory.scheme`` of the manifest."""
_LEAF_TAG = b"\x00pudlab.pol.segment/1"
_NODE_TAG = b"\x01"


def segment_leaf(index: int, start: int, end: int, adam_step: int, start_sha256: str, end_sha256: str,
                 batch_rows: np.ndarray) -> bytes:
    """The leaf of one segment (see the module docstring); ``batch_rows``: its rows of ``batches.npy``."""
    rows = np.ascontiguousarray(batch_rows, dtype="<i8")
    digest = hashlib.sha256(_LEAF_TAG)
    digest.update(struct.pack("<QQQQ", index, start, end, adam_step))
    digest.update(bytes.fromhex(start_sha256) + bytes.fromhex(end_sha256))
    digest.update(struct.pack("<QQ", *rows.shape) if rows.ndim == 2 else struct.pack("<QQ", rows.size, 1))
    digest.update(hashlib.sha256(rows.tobytes()).digest())
    return digest.digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(_NODE_TAG + left + right).digest()


def _levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    if not leaves:
        raise ValueError("a trajectory commitment needs at least one segment")
    levels = [list(leaves)]
    while len(levels[-1]) > 1:
        level = levels[-1]
        levels.append([_node(level[i], level[i + 1]) if i + 1 < len(level) else level[i]
                       for i in range(0, len(level), 2)])
    return levels


def merkle_root(leaves: Sequence[bytes]) -> str:
    """The root (hex) over ``leaves`` in order.

    >>> merkle_root([b"a" * 32]) == (b"a" * 32).hex()
    True
    """
    return _levels(leaves)[-1][0].hex()


def merkle_path(leaves: Sequence[bytes], index: int) -> list[tuple[str, str]]:
    """The sibling hashes from leaf ``index`` to the root: ``(side, hex)`` with side ``L`` or ``R``."""
    path = []
    for level in _levels(leaves)[:-1]:
        sibling = index ^ 1
        if sibling < len(level):
            path.append(("L" if sibling < index else "R", level[sibling].hex()))
        index //= 2
    return path


def verify_path(leaf: bytes, path: Sequence[tuple[str, str]], root: str) -> bool:
    """Whether ``leaf`` with its sibling ``path`` (:func:`merkle_path`) hashes to ``root``."""
    current = leaf
    for side, sibling in path:
        other = bytes.fromhex(sibling)
        current = _node(other, current) if side == "L" else _node(current, other)
    return current.hex() == root


def trajectory_leaves(segment_bounds: Sequence[tuple[int, int]], adam_steps: Sequence[int],
                      state_sha256: Sequence[str], batches: np.ndarray) -> list[bytes]:
    """Every segment's leaf. ``state_sha256``: the file SHA-256 of the initial state, then of each checkpoint."""
    if not len(segment_bounds) == len(adam_steps) == len(state_sha256) - 1:
        raise ValueError("one adam step per segment and one state file per segment boundary")
    return [segment_leaf(index, start, end, adam_steps[index], state_sha256[index], state_sha256[index + 1],
                         batches[start:end])
            for index, (start, end) in enumerate(segment_bounds)]


__all__ = ["SCHEME", "merkle_path", "merkle_root", "segment_leaf", "trajectory_leaves", "verify_path"]
