"""The masked LM of a MAGNeT export (``masked_lm*.onnx``, :mod:`mglab.onnx.export_magnet`): codes, the text
condition and a stage -> logits for every position of every codebook, in one non-causal pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np

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

    def __init__(self, onnx_path: Path, providers=None):
        self.session = Session(onnx_path, providers)

    @property
    def providers(self) -> list[str]:
        return self.session.providers

    def logits(self, codes: np.ndarray, hidden: np.ndarray, mask: np.ndarray, stage: int) -> np.ndarray:
        """One pass over ``R`` rows: the stage sets the self-attention (full at 0, local after)."""
        out = self.session.run({"input_ids": codes.astype(np.int64), "encoder_hidden_states": hidden,
                                "encoder_attention_mask": mask.astype(np.int64),
                                "stage": np.array(stage, dtype=np.int64)})["logits"]
        return out.astype(np.float32, copy=False)                              # [R, K, T, card]
