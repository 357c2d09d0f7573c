"""The one softmax (and log-softmax) every module uses; ``-inf`` entries (removed tokens) are fine."""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, in ``logits``' own float type; ``[..., V]``.

    Examples
    --------
    >>> softmax(np.array([0.0, -np.inf]))
    array([1., 0.])
    """
    z = logits - logits.max(axis=-1, keepdims=True)                          # [..., V]
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """``log p`` over the last axis, float64; ``-inf`` where the logit is ``-inf``; ``[..., V]``."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
