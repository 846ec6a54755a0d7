"""The two app objects Flower loads: ``pudlab.fl.flower.apps:server_app`` and ``:client_app``.

A Flower App's ``pyproject.toml`` names them in ``[tool.flwr.app.components]``
(:func:`pudlab.fl.flower.launch.write_app` writes one).
"""

from __future__ import annotations

from pudlab.fl.flower.client_app import make_client_app
from pudlab.fl.flower.server_app import make_server_app

server_app = make_server_app()
client_app = make_client_app()

__all__ = ["client_app", "server_app"]
