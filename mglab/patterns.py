"""Ways to lay K codebooks of T frames out as a sequence of decoding steps (audiocraft's
``codebooks_patterns.py``), for teaching. Each function returns ``steps [K, T]``: the decoding step at which
the token of codebook k, frame t is produced. For K = 3, T = 4::

    parallel (T steps)     delay (T + K - 1)      flattening (T * K)        coarse-first (T + T*(K-1))
    [0, 1, 2, 3]           [0, 1, 2, 3]           [0, 3, 6,  9]             [0, 1, 2, 3]
    [0, 1, 2, 3]           [1, 2, 3, 4]           [1, 4, 7, 10]             [4, 6, 8, 10]
    [0, 1, 2, 3]           [2, 3, 4, 5]           [2, 5, 8, 11]             [5, 7, 9, 11]

MusicGen uses *delay*: all codebooks at once, codebook k shifted by k steps, so codebook k of frame t is
predicted after codebooks 0..k-1 of the same frame. *Parallel* is fastest but predicts each frame's codebooks
independently; *flattening* is exact but K times slower; *coarse-first* (VALL-E style) decodes codebook 0
over all frames, then the rest frame by frame.
"""

from __future__ import annotations

import numpy as np


def parallel(k: int, t: int) -> np.ndarray:
    """All codebooks of a frame at one step: ``T`` steps."""
    return np.broadcast_to(np.arange(t), (k, t)).copy()


def delay(k: int, t: int, delays=None) -> np.ndarray:
    """Codebook k shifted right by ``delays[k]`` (default k): ``T + max(delays)`` steps."""
    d = np.arange(k) if delays is None else np.asarray(delays)
    return np.arange(t)[None, :] + d[:, None]


def flattening(k: int, t: int) -> np.ndarray:
    """One token per step, frame by frame, codebook 0 first: ``T * K`` steps."""
    return np.arange(t)[None, :] * k + np.arange(k)[:, None]


def coarse_first(k: int, t: int) -> np.ndarray:
    """Codebook 0 over every frame, then codebooks 1..K-1 flattened frame by frame: ``T + T * (K - 1)`` steps."""
    steps = np.empty((k, t), dtype=np.int64)
    steps[0] = np.arange(t)
    if k > 1:
        steps[1:] = t + flattening(k - 1, t)
    return steps


PATTERNS = {"parallel": parallel, "delay": delay, "flattening": flattening, "coarse_first": coarse_first}


def num_steps(steps: np.ndarray) -> int:
    """Decoding steps a layout takes."""
    return int(steps.max()) + 1
