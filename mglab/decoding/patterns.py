"""Stage 6 of 7: codebook patterns, how K codebooks of T frames become a sequence of decoding steps.

One object, :class:`Pattern`, as in audiocraft's ``codebooks_patterns.py``: a *layout* lists, for every
sequence position ``s``, the ``(t, q)`` coordinates (frame, codebook) whose tokens sit there. Position 0 is
always empty: it holds the special (start) token. :meth:`Pattern.build` lays codes ``[..., K, T]`` out as the
sequence ``[..., K, S]`` (special token where the layout has nothing) and :meth:`Pattern.revert` takes them
back. The decoder feeds position ``s`` at step ``s`` and predicts position ``s + 1``, so the token at
position ``s`` is produced by decoding step ``s - 1`` (:meth:`Pattern.steps`).

The providers below build the layouts of audiocraft's pattern providers. For K = 3 codebooks, T = 4 frames
(digits are frames, ``S`` the special token, one row per codebook)::

    delay (MusicGen)          parallel               unroll (flattening)
    [S, 0, 1, 2, 3, S, S]     [S, 0, 1, 2, 3]        [S, 0, S, S, 1, S, S, 2, S, S, 3, S, S]
    [S, S, 0, 1, 2, 3, S]     [S, 0, 1, 2, 3]        [S, S, 0, S, S, 1, S, S, 2, S, S, 3, S]
    [S, S, S, 0, 1, 2, 3]     [S, 0, 1, 2, 3]        [S, S, S, 0, S, S, 1, S, S, 2, S, S, 3]
    T + max(delay) steps      T steps                T * K steps

    coarse_first                  musiclm (group_by=2)
    [S, 0, 1, 2, 3, S, S, S, S]   [S, 0, S, 1, S, 2, S, 3, S, S, S, S, S]
    [S, S, S, S, S, 0, 1, 2, 3]   [S, S, 0, S, 1, S, 2, S, 3, S, S, S, S]
    [S, S, S, S, S, 0, 1, 2, 3]   [S, S, S, S, S, S, S, S, S, 0, 1, 2, 3]
    2T steps (+ delays of 1..K-1)  T * K steps: codebooks 0-1 flattened, then codebook 2

MusicGen uses *delay*: all codebooks at once, codebook k shifted by ``delays[k]``, so codebook k of frame t is
predicted after codebooks 0..k-1 of the same frame. *Parallel* is fastest but predicts each frame's codebooks
independently; *unroll* is exact but K times slower; *coarse_first* decodes codebook 0 over all frames, then
the others together; *musiclm* flattens groups of codebooks one group after the other.

The second half of this module is the delay pattern the way transformers writes it (a ``-1``/pad mask).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


class Pattern:
    """A layout: ``layout[s]`` is the tuple of ``(t, q)`` whose tokens sit at sequence position ``s``.

    Parameters
    ----------
    layout : sequence of sequences of (int, int)
        Position 0 must be empty (the special token). A codebook appears at most once per position and its
        frames never go backwards (audiocraft's checks). Coordinates with ``t >= timesteps`` are allowed
        (the tail of a delayed layout) and ignored when building.
    timesteps : int
        T, the frames the pattern lays out.
    n_q : int
        K, the codebooks.
    """

    def __init__(self, layout, timesteps: int, n_q: int):
        self.layout = tuple(tuple((int(t), int(q)) for t, q in coords) for coords in layout)
        self.timesteps, self.n_q = int(timesteps), int(n_q)
        self._validate()
        pos = np.full((self.n_q, self.timesteps), -1, dtype=np.int64)     # [K, T]: position of (q, t)
        for s, coords in enumerate(self.layout):
            for t, q in coords:
                if t < self.timesteps and pos[q, t] < 0:
                    pos[q, t] = s
        self._positions = pos
        self._done = pos.max(axis=0) - 1 if pos.size else pos               # [T]: step finishing frame t

    def _validate(self) -> None:
        if not self.layout or self.layout[0]:
            raise ValueError("a pattern's layout must start with an empty position (the special token)")
        last = [0] * self.n_q
        for s, coords in enumerate(self.layout):
            qs = [q for _, q in coords]
            if len(set(qs)) != len(qs):
                raise ValueError(f"layout position {s} holds codebook {qs} more than once")
            for t, q in coords:
                if not 0 <= q < self.n_q:
                    raise ValueError(f"layout position {s} names codebook {q}; there are {self.n_q}")
                if t < last[q]:
                    raise ValueError(f"layout position {s}: codebook {q} goes back from frame {last[q]} to {t}")
                last[q] = t

    @property
    def length(self) -> int:
        """S: sequence positions, the special token included (decoding steps + 1)."""
        return len(self.layout)

    @property
    def num_steps(self) -> int:
        """Decoding steps: every position but the first is predicted by one step."""
        return len(self.layout) - 1

    def positions(self) -> np.ndarray:
        """``[K, T]``: the sequence position of frame t of codebook q (-1 if the layout never places it)."""
        return self._positions.copy()

    def steps(self) -> np.ndarray:
        """``[K, T]``: the decoding step that produces frame t of codebook q (position - 1)."""
        return self._positions - 1

    @property
    def mask(self) -> np.ndarray:
        """``[K, S]`` bool: True where a code sits, False where the special token does."""
        m = np.zeros((self.n_q, self.length), dtype=bool)
        q, t = np.nonzero(self._positions >= 0)
        m[q, self._positions[q, t]] = True
        return m

    def build(self, codes: np.ndarray, special_token: int) -> np.ndarray:
        """Codes ``[..., K, T]`` -> sequence ``[..., K, S]``, ``special_token`` where the layout has none."""
        if codes.shape[-2:] != (self.n_q, self.timesteps):
            raise ValueError(f"codes of shape {codes.shape} do not fit a pattern of K={self.n_q}, "
                             f"T={self.timesteps}")
        seq = np.full(codes.shape[:-1] + (self.length,), special_token, dtype=codes.dtype)   # [..., K, S]
        q, t = np.nonzero(self._positions >= 0)
        seq[..., q, self._positions[q, t]] = codes[..., q, t]
        return seq

    def revert(self, sequence: np.ndarray) -> np.ndarray:
        """Sequence ``[..., K, S]`` -> codes ``[..., K, T]`` (the inverse of :meth:`build`)."""
        if sequence.shape[-2:] != (self.n_q, self.length):
            raise ValueError(f"a sequence of shape {sequence.shape} does not fit a pattern of K={self.n_q}, "
                             f"S={self.length}")
        if (self._positions < 0).any():
            raise ValueError("this pattern does not place every frame: it cannot be reverted")
        k = np.arange(self.n_q)[:, None]                                      # [K, 1]
        return sequence[..., k, self._positions]                              # [..., K, T]

    def frames_done_at(self, step: int) -> list[int]:
        """The frames whose last codebook is produced by decoding step ``step``."""
        return [int(t) for t in np.flatnonzero(self._done == step)]

    def __repr__(self) -> str:
        return f"Pattern(n_q={self.n_q}, timesteps={self.timesteps}, steps={self.num_steps})"


def _check(n_q: int, timesteps: int) -> None:
    for name, v in (("n_q", n_q), ("timesteps", timesteps)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name}={v!r} is not allowed: {name} must be an integer >= 1")


def _ascending(name: str, values, n: int) -> tuple[int, ...]:
    values = tuple(int(v) for v in values)
    if len(values) != n or list(values) != sorted(values) or min(values, default=0) < 0:
        raise ValueError(f"{name}={list(values)} is not allowed: {name} must be {n} ascending integers >= 0")
    return values


@lru_cache(maxsize=64)
def _delay(n_q: int, timesteps: int, delays: tuple[int, ...]) -> Pattern:
    layout = [()]
    for s in range(timesteps + max(delays)):
        layout.append(tuple((s - d, q) for q, d in enumerate(delays) if s - d >= 0))
    return Pattern(layout, timesteps, n_q)


def delay(n_q: int, timesteps: int, delays=None) -> Pattern:
    """Codebook q shifted right by ``delays[q]`` (default q): ``T + max(delays)`` steps.

    audiocraft's ``DelayedPatternProvider``; MusicGen's pattern. Stereo checkpoints use ``0, 0, 1, 1, ...``.

    Examples
    --------
    >>> delay(3, 4).build(np.arange(12).reshape(3, 4), special_token=-1)
    array([[-1,  0,  1,  2,  3, -1, -1],
           [-1, -1,  4,  5,  6,  7, -1],
           [-1, -1, -1,  8,  9, 10, 11]])
    """
    _check(n_q, timesteps)
    return _delay(n_q, timesteps, _ascending("delays", range(n_q) if delays is None else delays, n_q))


def parallel(n_q: int, timesteps: int) -> Pattern:
    """All codebooks of a frame at one step: ``T`` steps (audiocraft's ``ParallelPatternProvider``)."""
    return delay(n_q, timesteps, [0] * n_q)


@lru_cache(maxsize=64)
def _unroll(n_q: int, timesteps: int, flattening: tuple[int, ...], delays: tuple[int, ...]) -> Pattern:
    groups: dict[int, tuple[list[int], int]] = {}
    for q, (inner, d) in enumerate(zip(flattening, delays)):
        if inner in groups and groups[inner][1] != d:
            raise ValueError("codebooks flattened to the same inner step must have the same delay")
        groups.setdefault(inner, ([], d))[0].append(q)
    inner_steps, max_t = max(groups) + 1, timesteps + max(delays)
    indexed = [(-1, ())]
    for t in range(max_t):
        for inner in range(inner_steps):
            if inner in groups:
                qs, d = groups[inner]
                if t + d < max_t:
                    indexed.append((t + d, tuple((t, q) for q in qs)))
            else:
                indexed.append((t, ()))
    return Pattern([coords for _, coords in sorted(indexed)], timesteps, n_q)


def unroll(n_q: int, timesteps: int, flattening=None, delays=None) -> Pattern:
    """Codebooks flattened into inner steps (default one codebook a step: ``T * K`` steps).

    audiocraft's ``UnrolledPatternProvider``: ``flattening[q]`` is codebook q's inner step (equal values share
    a step), ``delays[q]`` shifts it by whole frames.
    """
    _check(n_q, timesteps)
    flattening = _ascending("flattening", range(n_q) if flattening is None else flattening, n_q)
    delays = _ascending("delays", [0] * n_q if delays is None else delays, n_q)
    return _unroll(n_q, timesteps, flattening, delays)


def flattening(n_q: int, timesteps: int) -> Pattern:
    """One token per step, frame by frame, codebook 0 first: ``T * K`` steps (full :func:`unroll`)."""
    return unroll(n_q, timesteps)


@lru_cache(maxsize=64)
def _coarse_first(n_q: int, timesteps: int, delays: tuple[int, ...]) -> Pattern:
    layout = [()] + [((t, 0),) for t in range(timesteps)]
    for s in range(timesteps + max(delays, default=0)):
        layout.append(tuple((s - d, q + 1) for q, d in enumerate(delays) if s - d >= 0))
    return Pattern(layout, timesteps, n_q)


def coarse_first(n_q: int, timesteps: int, delays=None) -> Pattern:
    """Codebook 0 over every frame, then codebooks 1..K-1 together (delayed by ``delays``, default 0):
    ``2T + max(delays)`` steps. audiocraft's ``CoarseFirstPattern``."""
    _check(n_q, timesteps)
    return _coarse_first(n_q, timesteps, _ascending("delays", [0] * (n_q - 1) if delays is None else delays,
                                                     n_q - 1))


@lru_cache(maxsize=64)
def _musiclm(n_q: int, timesteps: int, group_by: int) -> Pattern:
    layout = [()]
    for offset in range(0, n_q, group_by):
        for t in range(timesteps):
            layout += [((t, q),) for q in range(offset, min(offset + group_by, n_q))]
    return Pattern(layout, timesteps, n_q)


def musiclm(n_q: int, timesteps: int, group_by: int = 2) -> Pattern:
    """Groups of ``group_by`` codebooks, each flattened over every frame before the next group: ``T * K``
    steps. audiocraft's ``MusicLMPattern``."""
    _check(n_q, timesteps)
    _check(group_by, 1)
    return _musiclm(n_q, timesteps, int(group_by))


PATTERNS = {"parallel": parallel, "delay": delay, "flattening": flattening, "coarse_first": coarse_first,
            "musiclm": musiclm}

# the delay pattern as transformers writes it --------------------------------------------------------------
# The delay provider, :func:`delay`, seen as transformers' ``build_delay_pattern_mask`` writes it: the mask
# the generation loop applies, ``-1`` where a token is predicted, the pad/start token where it is forced. For
# K = 4 and ``max_length`` L = 8 (one start token + 7 steps), the pattern is (P = pad, -1 = to be predicted)::
#
#     position:   0   1   2   3   4   5   6   7
#     codebook 0 [P, -1, -1, -1, -1,  P,  P,  P]
#     codebook 1 [P,  P, -1, -1, -1, -1,  P,  P]
#     codebook 2 [P,  P,  P, -1, -1, -1, -1,  P]
#     codebook 3 [P,  P,  P,  P, -1, -1, -1, -1]
#
# Position 0 is the start token. Each step t (0-based) feeds column t and predicts column t + 1; wherever the
# pattern is not -1 the sampled token is replaced by the pattern's value. That includes the upper-right
# triangle: in the last ``max(delays)`` steps the early codebooks are forced to pad while the late ones finish
# their last frames. There are ``L - 1 - max(delays)`` frames. De-delaying reads frame f of codebook k at
# position ``f + delays[k] + 1``::
#
#     delayed (K=4)                       de-delayed codes [K, frames=4]
#     [P, a0, a1, a2, a3,  P,  P,  P]     [a0, a1, a2, a3]
#     [P,  P, b0, b1, b2, b3,  P,  P] ->  [b0, b1, b2, b3]
#     [P,  P,  P, c0, c1, c2, c3,  P]     [c0, c1, c2, c3]
#     [P,  P,  P,  P, d0, d1, d2, d3]     [d0, d1, d2, d3]
#
# Stereo checkpoints interleave left/right codebooks with delays ``0, 0, 1, 1, 2, 2, 3, 3``.

PREDICT = -1


def default_delays(num_codebooks: int, audio_channels: int = 1) -> np.ndarray:
    """``[0, 1, .., K-1]`` (mono) or ``[0, 0, 1, 1, ..]`` (stereo)."""
    k = np.arange(num_codebooks)
    return k if audio_channels == 1 else k // 2


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
    mask = delay(num_codebooks, num_frames(max_length, delays), delays).mask   # [K, L]
    return np.where(mask, PREDICT, pad_token_id).astype(np.int64)                 # [K, L]


def apply_delay_pattern(tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Force the pattern's pads onto ``tokens [..., K, t]`` (the first ``t`` columns of the pattern)."""
    mask = mask[:, : tokens.shape[-1]]                                        # [K, t]
    return np.where(mask == PREDICT, tokens, mask)                            # [..., K, t]


def undelay(tokens: np.ndarray, delays) -> np.ndarray:
    """Delayed tokens ``[..., K, L]`` -> codes ``[..., K, frames]``: frame f of codebook k is at ``f + d_k + 1``."""
    k = tokens.shape[-2]
    return delay(k, num_frames(tokens.shape[-1], delays), delays).revert(tokens)


def delay_codes(codes: np.ndarray, pad_token_id: int, delays=None) -> np.ndarray:
    """Inverse of :func:`undelay`: codes ``[..., K, frames]`` -> delayed tokens ``[..., K, frames + max_delay + 1]``."""
    k, frames = codes.shape[-2:]
    return delay(k, frames, delays).build(np.asarray(codes, dtype=np.int64), pad_token_id)
