"""pudlab's federated learning on Flower (``flwr``, the optional extra ``pudlab[flower]``).

Flower carries the arrays and orchestrates the rounds; pudlab does the rest, with the same
functions as its own engine, so that both engines reach bit-identical global models:

* :mod:`.transport`: weights, proof bundles and the spec as Flower records (``ArrayRecord``,
  ``ConfigRecord``, ``MetricRecord`` in ``Message`` objects), and their payload size;
* :mod:`.client_app`: the ``ClientApp`` (Flower's current app API): local training of M_cnn on the
  node's partition (:meth:`pudlab.fl.clients.ClientPool.submission`: honest, Byzantine, lazy,
  thief, adaptive), O(T_k) under the node's own noise key, proof bundles sent on challenge;
* :mod:`.strategy`: :class:`~.strategy.PudlabStrategy`, a Flower ``Strategy`` that aggregates with
  any of pudlab's rules and, with a PoL defence, challenges the clients with pudlab's verifier
  before their update counts (rejections and reasons in the round's metrics);
* :mod:`.server_app`: the ``ServerApp`` that runs a spec's defences round by round into a pudlab
  store (same layout, same records, resumable) and records each round's cost;
* :mod:`.apps`: the two app objects Flower loads (``pudlab.fl.flower.apps:server_app`` /
  ``:client_app``);
* :mod:`.launch` and :mod:`.engine`: a private SuperLink (simulation runtime on Ray, or
  deployment runtime with SuperNodes) on loopback, ``flwr run``, and cleanup
  (``pudlab fl simulate SPEC --engine flower``).

Importing this package does not import Flower; :func:`require_flower` says what is missing.
"""

from __future__ import annotations

import importlib.util

from pudlab.errors import PudlabError

FLOWER_PIN = "1.42.0"
"""The Flower release the ``flower`` extra pins (``pyproject.toml``)."""


class FlowerError(PudlabError):
    """The Flower engine cannot run, or a Flower run failed."""


def flower_missing() -> str | None:
    """Why the Flower engine cannot run here (None when ``flwr`` and Ray are importable)."""
    missing = [name for name in ("flwr", "ray") if importlib.util.find_spec(name) is None]
    if not missing:
        return None
    return (f"the Flower engine needs {' and '.join(missing)}: install the flower extra "
            f"(pip install 'pudlab[flower]', or ./scripts/setup --flower)")


def require_flower() -> None:
    """Raise :class:`FlowerError` naming the missing packages unless Flower (with Ray) is installed."""
    reason = flower_missing()
    if reason is not None:
        raise FlowerError(reason)


__all__ = ["FLOWER_PIN", "FlowerError", "flower_missing", "require_flower"]
