"""Client data partitioning: each client's local data T_k, an S-X-Y-Z sample of T_t.

Client k's sample is drawn with the seed ``(seed, "client", k)``; with ``[sampling] disjoint``
the clients are drawn in order, each excluding what the previous ones took.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pudlab.data.dataset import LabeledImages
from pudlab.errors import PudlabError
from pudlab.fl.spec import SimulationSpec
from pudlab.sampling import draw_sample, label_window
from pudlab.seeding import derive_seed


@dataclass(frozen=True, eq=False)
class ClientData:
    """One client's local data T_k and how it was drawn."""

    client: int
    labels: tuple[int, ...]
    """Labels the client covers."""
    data: LabeledImages
    """Raw local data T_k (never leaves the client; only O(T_k) is shared in a PoL bundle)."""


def client_label_sets(spec: SimulationSpec, num_classes: int) -> list[tuple[int, ...]]:
    """Each client's covered labels: all (iid), the explicit lists, or the chained window rule."""
    sampling, clients = spec.sampling, spec.simulation.clients
    if sampling.mode == "iid":
        return [tuple(range(num_classes))] * clients
    if sampling.labels:
        for client, labels in enumerate(sampling.labels):
            bad = [label for label in labels if label >= num_classes]
            if bad:
                raise PudlabError(f"{spec.source}: [sampling] labels of client {client}: {bad} outside 0..{num_classes - 1}")
        return [tuple(labels) for labels in sampling.labels]
    setting = sampling.sampling_setting
    windows: list[tuple[int, ...]] = []
    for _ in range(clients):
        reference = windows[-1] if windows else None
        windows.append(label_window(setting, num_classes, reference_labels=reference))
    return windows


def partition_clients(spec: SimulationSpec, train_set: LabeledImages, num_classes: int) -> list[ClientData]:
    """Draw every client's sample of T_t (S-X-Y-Z per client; disjoint when ``sampling.disjoint``)."""
    ratio = spec.sampling.sampling_setting.sampling_ratio
    taken: np.ndarray | None = None
    result = []
    for client, labels in enumerate(client_label_sets(spec, num_classes)):
        positions = draw_sample(train_set.labels, labels, ratio, seed=derive_seed(spec.simulation.seed, "client", client),
                                exclude=taken if spec.sampling.disjoint else None)
        if len(positions) == 0:
            raise PudlabError(f"{spec.source}: client {client} gets no data (labels {list(labels)}, Z={ratio:g})")
        taken = positions if taken is None else np.concatenate([taken, positions])
        result.append(ClientData(client, tuple(labels), train_set.take(positions)))
    return result


__all__ = ["ClientData", "client_label_sets", "partition_clients"]
