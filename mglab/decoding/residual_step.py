"""One decoding step with the residual stream's hooks: read each point, and run again where a hook edits one.

The graph half (where the points sit, the rewrite that exposes them, the ``edit.*`` inputs) is
:mod:`mglab.onnx.residual_graph`; this is the half that runs a step with hooks attached.
"""

from __future__ import annotations

import numpy as np

from ..onnx.residual_graph import point_hooks


def stepper(hooks, step: int, num_layers: int):
    """What :meth:`mglab.networks.decoder.Decoder.step` takes as ``resid`` for ``step`` (when a residual point is
    hooked): ``resid(run, feeds)``."""
    return lambda run, feeds: run_step(run, feeds, hooks, step, num_layers)


def run_step(run, feeds: dict[str, np.ndarray], hooks, step: int, num_layers: int) -> dict[str, np.ndarray]:
    """Run one decoding step with residual hooks; returns the last run's outputs.

    ``run()`` runs the graph on ``feeds`` (the ``edit.*`` arrays, filled here in place) and returns its
    outputs. The hooks of each point see the value of a run in which every earlier edit is in place; a
    point whose hooks change its value (returned, or edited in place) is switched on and the step runs again.
    """
    out, edited = run(), []
    for point, names in point_hooks(num_layers).items():
        names = [(n, layer) for n, layer in names if hooks.wants(n)]
        if not names:
            continue
        before = np.array(out[point])                                          # [H*B, 1, d], a copy
        value = before.copy()
        for name, layer in names:
            value = hooks(name, value, step, layer)
        if not np.array_equal(value, before, equal_nan=True):
            feeds[f"edit.{point}"][...] = value
            feeds[f"edit.{point}.on"][...] = True
            edited.append(point)
            out = run()
    for point in edited:                                                       # off again for the next step
        feeds[f"edit.{point}.on"][...] = False
    return out
