"""Stage 5 of 7: choosing the next token from (guided) logits: temperature, top-k, top-p, greedy or sampling.

Each warper matches transformers' ``TemperatureLogitsWarper``, ``TopKLogitsWarper`` and ``TopPLogitsWarper``
(applied in that order, after guidance): removed tokens get ``-inf``. Sampling draws one uniform number per
codebook from a seeded ``numpy.random.Generator`` per prompt and inverts the cumulative distribution, so the
same seed gives the same tokens on every machine.
"""

from __future__ import annotations

import numpy as np

from ..core.numeric import softmax


def apply_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    """``logits / temperature``; ``[..., V]``."""
    return logits / np.float32(temperature)


def top_k_filter(logits: np.ndarray, top_k: int) -> np.ndarray:
    """Keep the ``top_k`` largest logits (ties with the k-th kept too), ``-inf`` elsewhere; ``[..., V]``."""
    if top_k <= 0 or top_k >= logits.shape[-1]:
        return logits
    kth = np.partition(logits, -top_k, axis=-1)[..., -top_k, None]            # [..., 1]
    return np.where(logits < kth, -np.inf, logits).astype(logits.dtype)       # [..., V]


def top_p_filter(logits: np.ndarray, top_p: float) -> np.ndarray:
    """Nucleus filtering: keep the smallest set of most likely tokens whose probability exceeds ``top_p``.

    As transformers does it: sort ascending, drop tokens while the cumulative probability is ``<= 1 - top_p``,
    always keep the most likely token.
    """
    if top_p >= 1.0:
        return logits
    order = np.argsort(logits, axis=-1, kind="stable")                        # [..., V] ascending
    probs = softmax(np.take_along_axis(logits, order, axis=-1))               # [..., V]
    drop_sorted = np.cumsum(probs, axis=-1) <= (1.0 - top_p)                  # [..., V]
    drop_sorted[..., -1] = False
    drop = np.empty_like(drop_sorted)
    np.put_along_axis(drop, order, drop_sorted, axis=-1)                      # [..., V]
    return np.where(drop, -np.inf, logits).astype(logits.dtype)


def warp(logits: np.ndarray, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> np.ndarray:
    """Temperature, then top-k, then top-p; ``[..., V]``."""
    if temperature != 1.0:
        logits = apply_temperature(logits, temperature)
    return top_p_filter(top_k_filter(logits, top_k), top_p)


def greedy(logits: np.ndarray) -> np.ndarray:
    """Most likely token: ``[B, K, V] -> [B, K]``."""
    return logits.argmax(axis=-1).astype(np.int64)


def sample(logits: np.ndarray, rngs: list[np.random.Generator]) -> np.ndarray:
    """Draw one token per codebook: ``[B, K, V] -> [B, K]``, prompt b drawing from ``rngs[b]``."""
    return draw(softmax(logits.astype(np.float64)), rngs)                     # [B, K]


def draw(weights: np.ndarray, rngs: list[np.random.Generator]) -> np.ndarray:
    """Inverse-CDF draws from unnormalized ``weights [B, N, V]``: row b takes ``N`` uniforms from ``rngs[b]``."""
    cdf = np.cumsum(weights, axis=-1)                                         # [B, N, V]
    u = np.stack([rng.random(weights.shape[1]) for rng in rngs]) * cdf[..., -1]   # [B, N]
    return np.minimum((cdf <= u[..., None]).sum(axis=-1), weights.shape[-1] - 1).astype(np.int64)


def make_rngs(seed, batch: int) -> list[np.random.Generator]:
    """One generator per prompt. Every prompt starts from the same seed, so a prompt's tokens do not depend
    on its place in the batch; pass a list of seeds to give prompts different streams."""
    seeds = list(seed) if isinstance(seed, (list, tuple)) else [seed] * batch
    return [np.random.default_rng(s) for s in seeds]
