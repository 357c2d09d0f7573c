"""MusicGen's delay pattern written the way transformers' ``build_delay_pattern_mask`` writes it.

This is :func:`mglab.patterns.delay` (one :class:`~mglab.patterns.Pattern`) seen as the mask the generation
loop applies: ``-1`` where a token is predicted, the pad/start token where it is forced. For K = 4 and
``max_length`` L = 8 (one start token + 7 steps), the pattern is (P = pad, -1 = to be predicted)::

    position:   0   1   2   3   4   5   6   7
    codebook 0 [P, -1, -1, -1, -1,  P,  P,  P]
    codebook 1 [P,  P, -1, -1, -1, -1,  P,  P]
    codebook 2 [P,  P,  P, -1, -1, -1, -1,  P]
    codebook 3 [P,  P,  P,  P, -1, -1, -1, -1]

Position 0 is the start token. Each step t (0-based) feeds column t and predicts column t + 1; wherever the
pattern is not -1 the sampled token is replaced by the pattern's value. That includes the upper-right
triangle: in the last ``max(delays)`` steps the early codebooks are forced to pad while the late ones finish
their last frames. There are ``L - 1 - max(delays)`` frames. De-delaying reads frame f of codebook k at
position ``f + delays[k] + 1``::

    delayed (K=4)                       de-delayed codes [K, frames=4]
    [P, a0, a1, a2, a3,  P,  P,  P]     [a0, a1, a2, a3]
    [P,  P, b0, b1, b2, b3,  P,  P] ->  [b0, b1, b2, b3]
    [P,  P,  P, c0, c1, c2, c3,  P]     [c0, c1, c2, c3]
    [P,  P,  P,  P, d0, d1, d2, d3]     [d0, d1, d2, d3]

Stereo checkpoints interleave left/right codebooks with delays ``0, 0, 1, 1, 2, 2, 3, 3``.
"""

from __future__ import annotations

import numpy as np

from . import patterns

PREDICT = -1


def default_delays(num_codebooks: int, audio_channels: int = 1) -> np.ndarray:
    """``[0, 1, .., K-1]`` (mono) or ``[0, 0, 1, 1, ..]`` (stereo)."""
    k = np.arange(num_codebooks)
    return k if audio_channels == 1 else k // 2


def pattern(num_codebooks: int, frames: int, delays=None) -> patterns.Pattern:
    """The delay :class:`~mglab.patterns.Pattern` of ``frames`` frames (``frames + max(delays) + 1`` positions)."""
    return patterns.delay(num_codebooks, frames, None if delays is None else list(delays))


def num_frames(max_length: int, delays) -> int:
    """Frames left after de-delaying a ``max_length`` sequence: ``max_length - 1 - max(delays)``."""
    return max_length - 1 - int(np.max(delays))


def build_delay_pattern(num_codebooks: int, max_length: int, pad_token_id: int,
                        delays=None) -> np.ndarray:
    """The pattern matrix ``[K, max_length]``: ``-1`` where a token is predicted, ``pad_token_id`` elsewhere.

    Parameters
    ----------
    num_codebooks : int
        K, the number of codebooks.
    max_length : int
        Total length including the start token: ``1 + max_new_tokens``.
    pad_token_id : int
        Value of the forced positions (transformers passes the decoder start token, 2048 for public models).
    delays : array-like of int, shape [K], optional
        Delay of each codebook; default ``0..K-1``.

    Returns
    -------
    pattern : np.ndarray [K, max_length] int64

    Examples
    --------
    >>> build_delay_pattern(4, 8, pad_token_id=9)
    array([[ 9, -1, -1, -1, -1,  9,  9,  9],
           [ 9,  9, -1, -1, -1, -1,  9,  9],
           [ 9,  9,  9, -1, -1, -1, -1,  9],
           [ 9,  9,  9,  9, -1, -1, -1, -1]])
    """
    delays = default_delays(num_codebooks) if delays is None else np.asarray(delays)
    max_delay = int(delays.max())
    if max_length < max_delay + 2:
        raise ValueError(f"max_length={max_length} is too short for delays up to {max_delay}: it must be at "
                         f"least {max_delay + 2} to hold one frame")
    mask = pattern(num_codebooks, num_frames(max_length, delays), delays).mask   # [K, L]
    return np.where(mask, PREDICT, pad_token_id).astype(np.int64)                 # [K, L]


def apply_delay_pattern(tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Force the pattern's pads onto ``tokens [..., K, t]`` (the first ``t`` columns of the pattern)."""
    mask = mask[:, : tokens.shape[-1]]                                        # [K, t]
    return np.where(mask == PREDICT, tokens, mask)                            # [..., K, t]


def undelay(tokens: np.ndarray, delays) -> np.ndarray:
    """Delayed tokens ``[..., K, L]`` -> codes ``[..., K, frames]``: frame f of codebook k is at ``f + d_k + 1``."""
    k = tokens.shape[-2]
    return pattern(k, num_frames(tokens.shape[-1], delays), delays).revert(tokens)


def delay(codes: np.ndarray, pad_token_id: int, delays=None) -> np.ndarray:
    """Inverse of :func:`undelay`: codes ``[..., K, frames]`` -> delayed tokens ``[..., K, frames + max_delay + 1]``."""
    k, frames = codes.shape[-2:]
    return pattern(k, frames, delays).build(np.asarray(codes, dtype=np.int64), pad_token_id)
