"""Long form: runs longer than the model's window, decoded window after window (audiocraft's scheme).

Each window decodes at most ``window_frames`` frames. The first starts from nothing; each later one is
prompted with the last ``window - stride`` frames of the one before (its *prompt codes*, fed through the
delay pattern as known tokens) and adds up to ``stride`` new frames::

    window 0   [=========== window ===========]
    window 1                 [... prompt ...][== stride ==]
    window 2                                [... prompt ...][== stride ==]

:func:`plan` gives the windows; :func:`frames` decodes them and yields each finished frame. Audio
continuation reuses the same mechanism: its prompt codes come from the codec's encoder.
"""

from __future__ import annotations

import numpy as np

from . import patterns
from .loop import decode_window


def plan(total: int, window: int, stride: int, prompt: int = 0) -> list[tuple[int, int]]:
    """``[(prompt_frames, frames), ...]`` per window for ``total`` new frames after ``prompt`` given ones.

    Examples
    --------
    >>> plan(total=10, window=6, stride=4)
    [(0, 6), (2, 6)]
    """
    out, done = [], 0
    while done < total:
        n = min(window, prompt + total - done)
        out.append((prompt, n))
        done += n - prompt
        prompt = n - stride
    return out


def frames(decoder, hooks, cond, prefix: np.ndarray, s, rngs, on_step=None):
    """Yield each newly finished frame ``[B, K, 1]`` (and the window's delayed tokens), window after window.

    ``prefix [B, K, P]``: codes the first window starts from (P = 0 for text-only generation); they are
    not yielded. ``on_step()`` is called after every decoding step (a progress bar).
    """
    delays = decoder.config.delays
    step = 0
    for w, (given, n) in enumerate(plan(s.frames, s.window_frames, s.stride_frames, prefix.shape[-1])):
        hooks.window = w
        pattern = patterns.delay(prefix.shape[1], n, delays)
        positions = pattern.positions()                                       # [K, n]
        k = np.arange(len(delays))
        tokens = None
        for t, tokens in decode_window(decoder, hooks, cond, prefix, n, rngs, s, step):
            for f in pattern.frames_done_at(t):
                if f >= given:
                    yield tokens[:, k, positions[:, f]][..., None], tokens    # [B, K, 1]
            if on_step:
                on_step()
        step += pattern.num_steps
        prefix = pattern.revert(tokens)[:, :, s.stride_frames:]               # [B, K, n - stride]
    hooks.window = None
