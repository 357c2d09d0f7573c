"""The masked LM of a MAGNeT export (``masked_lm*.onnx``, :mod:`mglab.onnx.export_magnet`): codes, the text
condition and a stage -> logits for every position of every codebook, in one non-causal pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..onnx.residual_graph import graph_points, with_residual
from ..onnx.session import Session


class MaskedLM:
    """``masked_lm*.onnx``: ``logits(codes [R, K, T], hidden [R, n, d], mask [R, n], stage) -> [R, K, T, card]``.

    Examples
    --------
    >>> lm = MaskedLM("data/models/tiny-magnet/onnx/masked_lm.onnx")
    >>> codes = np.full((2, 4, 9), 128)                                       # everything masked
    >>> lm.logits(codes, np.zeros((2, 1, 32), np.float32), np.ones((2, 1), np.int64), stage=0).shape
    (2, 4, 9, 128)
    """

    def __init__(self, onnx_path: Path, providers=None, num_layers: int | None = None):
        self.path, self.providers_given, self.num_layers = Path(onnx_path), providers, num_layers
        self.session = Session(onnx_path, providers)
        self._residual = None

    @property
    def providers(self) -> list[str]:
        """The ONNX Runtime providers the session runs on."""
        return self.session.providers

    def logits(self, codes: np.ndarray, hidden: np.ndarray, mask: np.ndarray, stage: int, resid=None) -> np.ndarray:
        """One pass over ``R`` rows: the stage sets the self-attention (full at 0, local after). ``resid(run,
        feeds)`` (:func:`mglab.decoding.residual_step.run_step`): the pass runs on the graph rewritten with the
        residual stream's points (:mod:`mglab.onnx.residual_graph`), read and edited by hooks."""
        feeds = {"input_ids": codes.astype(np.int64), "encoder_hidden_states": hidden,
                 "encoder_attention_mask": mask.astype(np.int64), "stage": np.array(stage, dtype=np.int64)}
        if resid is None:
            out = self.session.run(feeds)["logits"]
        else:
            session = self._residual_session()
            r, t, d = codes.shape[0], codes.shape[-1], hidden.shape[-1]
            for point in graph_points(self.num_layers):                       # every edit off
                feeds[f"edit.{point}.on"] = np.zeros(1, dtype=bool)
                feeds[f"edit.{point}"] = np.zeros((r, t, d), dtype=np.float32)   # [R, T, d]
            out = resid(lambda: session.run(feeds), feeds)["logits"]
        return out.astype(np.float32, copy=False)                              # [R, K, T, card]

    def _residual_session(self) -> Session:
        if self._residual is None:
            if self.num_layers is None:
                raise ValueError("the residual stream's points need the LM's num_layers")
            self._residual = Session(with_residual(self.path, self.num_layers), self.providers_given)
        return self._residual
