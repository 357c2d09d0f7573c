"""Numbers about distributions over codebook tokens: entropy, KL divergence, top-1 agreement, mass kept.

All take logits ``[..., V]`` (``-inf`` for removed tokens is fine) and reduce the last axis.

Examples
--------
>>> import numpy as np
>>> from mglab.inspect.distributions import entropy
>>> float(entropy(np.zeros(4)))            # uniform over 4 tokens: log 4 nats
1.3862943611198906
"""

from __future__ import annotations

import numpy as np

from ..core.numeric import log_softmax


def entropy(logits: np.ndarray) -> np.ndarray:
    """Shannon entropy in nats: ``[..., V] -> [...]``."""
    logp = log_softmax(logits)
    p = np.exp(logp)
    return -(p * np.where(p > 0, logp, 0.0)).sum(axis=-1)


def kl_divergence(p_logits: np.ndarray, q_logits: np.ndarray) -> np.ndarray:
    """``KL(p || q)`` in nats: ``[..., V], [..., V] -> [...]``."""
    logp, logq = log_softmax(p_logits), log_softmax(q_logits)
    p = np.exp(logp)
    return (p * np.where(p > 0, logp - logq, 0.0)).sum(axis=-1)


def top1_agreement(a_logits: np.ndarray, b_logits: np.ndarray) -> np.ndarray:
    """1.0 where both distributions have the same most likely token: ``[..., V] -> [...]``."""
    return (np.argmax(a_logits, axis=-1) == np.argmax(b_logits, axis=-1)).astype(np.float64)


def tokens_kept(logits: np.ndarray) -> np.ndarray:
    """How many tokens a filter left (finite logits): ``[..., V] -> [...]``."""
    return np.isfinite(logits).sum(axis=-1)


def mass_kept(filtered: np.ndarray, original: np.ndarray) -> np.ndarray:
    """Probability mass (under ``original``) of the tokens ``filtered`` kept: ``[..., V] -> [...]``."""
    p = np.exp(log_softmax(original))
    return (p * np.isfinite(filtered)).sum(axis=-1)


def codebook_usage(codes: np.ndarray, vocab_size: int) -> np.ndarray:
    """Histogram of token ids per codebook: codes ``[..., K, frames] -> [K, vocab_size]``."""
    k = codes.shape[-2]
    flat = np.moveaxis(codes, -2, 0).reshape(k, -1)
    return np.stack([np.bincount(row, minlength=vocab_size)[:vocab_size] for row in flat])
