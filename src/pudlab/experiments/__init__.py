"""Experiments as data: TOML specs and presets, content-keyed jobs, a resumable store, a runner.

Each name has one home, imported from its module (the package itself re-exports nothing, so that
``import pudlab.experiments.spec`` stays free of torch): ``spec`` (experiments and presets), ``jobs``,
``options`` (``RunOptions``), ``sweep`` (``prepare_sweep``, ``plan_sweep``, ``run_sweep``), ``runner``
(``run_jobs``), ``worker``, ``executors``, ``ray_executor``, ``store`` (``Store``), ``series``,
``stats``, ``claims``, ``controls``, ``results`` (``open_store``: the store-read API).
"""
