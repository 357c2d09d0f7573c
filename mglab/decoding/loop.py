"""One window of decoding, top to bottom: the heart of :meth:`mglab.MusicGen.generate`.

    tokens[:, :, t] --decoder--> logits [H*B*K, V] --guidance--> [B, K, V] --warp/sample--> [B, K]
                    --delay pattern--> tokens[:, :, t + 1]

A window decodes ``frames`` frames laid out by the delay :class:`~mglab.decoding.patterns.Pattern`; its first ``P``
frames may be given (prompt codes: a long-form window's overlap, or an audio prompt). Hook points fire where
their names say; the loop itself knows nothing of what hooks do.
"""

from __future__ import annotations

import numpy as np

from ..core.hooks import ATTENTION, RESID, run_layer_hooks
from . import conditioning, guidance, patterns, residual_step, sampling

NONFINITE_FILL = 1e9


def decode_window(decoder, hooks, cond: conditioning.Condition, prefix: np.ndarray, frames: int, rngs, s,
                  step0: int = 0):
    """Decode one window of ``frames`` frames whose first ``P`` are the codes ``prefix [B, K, P]``.

    Yields ``(t, tokens)`` after each step t; ``tokens [B, K, frames + max_delay + 1]`` is the delayed
    matrix, the start token and the forced pads and prompt codes included. ``step0`` numbers the steps of
    this window after those of earlier windows (what hooks see as ``hook.step``).
    """
    c = decoder.config
    batch, k = prefix.shape[:2]
    pattern = patterns.delay(k, frames, c.delays)                              # S = frames + max_delay + 1
    given = np.full((batch, k, frames), patterns.PREDICT, dtype=np.int64)        # [B, K, T]: -1 = predict
    given[..., :prefix.shape[-1]] = prefix
    known = pattern.build(given, c.decoder_start_token_id)                    # [B, K, S]
    tokens = np.where(known == patterns.PREDICT, c.decoder_start_token_id, known)   # [B, K, S]
    attention, cache = hooks.wants_kind(ATTENTION), None
    resid_hooked = hooks.wants_kind(RESID)
    for t in range(pattern.num_steps):
        step = step0 + t
        x = hooks("decoder.hook_input_ids", tokens[:, :, t], step)            # [B, K]
        x = conditioning.to_rows(x, cond.halves)                              # [H*B*K, 1]
        resid = residual_step.stepper(hooks, step, c.num_layers) if resid_hooked else None   # None: plain graphs
        logits, cache, attn = decoder.step(x, cond.hidden, cond.mask, cache, attention,
                                           capacity=pattern.num_steps, resid=resid)   # [H*B*K, V]
        logits = check_finite(logits, step, s.on_nonfinite, batch, k)          # [H*B*K, V]
        if hooks:
            run_layer_hooks(hooks, step, cache, attn, c.num_layers, first=t == 0)
        scores, uncond = conditioning.from_rows(logits, batch, k)             # [B, K, V] each
        scores = hooks("guidance.hook_cond_logits", scores, step)              # [B, K, V]
        if uncond is not None:
            uncond = hooks("guidance.hook_uncond_logits", uncond, step)       # [B, K, V]
            scores = guidance.guide(scores, uncond, s.guidance_scale)          # [B, K, V]
        scores = hooks("guidance.hook_logits", scores, step)                   # [B, K, V]
        if s.do_sample:
            scores = sampling.warp(scores, s.temperature, s.top_k, s.top_p)    # [B, K, V]
        scores = hooks("sampler.hook_logits", scores, step)                    # [B, K, V]
        some_token_left(scores, step)
        nxt = sampling.sample(scores, rngs) if s.do_sample else sampling.greedy(scores)   # [B, K]
        nxt = hooks("sampler.hook_tokens", nxt, step)                          # [B, K]
        column = np.where(known[:, :, t + 1] == patterns.PREDICT, nxt, known[:, :, t + 1])   # [B, K]
        tokens[:, :, t + 1] = hooks("delay.hook_tokens", column, step)         # [B, K]
        yield t, tokens


def check_finite(logits: np.ndarray, step: int, how: str, batch: int, k: int) -> np.ndarray:
    """NaN or inf logits: an error naming the step, prompt and codebook, or (``how='replace'``) finite fills."""
    if np.isfinite(logits).all():
        return logits
    if how == "replace":
        return np.nan_to_num(logits, nan=-NONFINITE_FILL, posinf=NONFINITE_FILL, neginf=-NONFINITE_FILL)
    row = int(np.flatnonzero(~np.isfinite(logits).all(axis=-1))[0])
    half, b, kb = conditioning.row_index(row, batch, k)
    bad = logits[row]
    raise FloatingPointError(
        f"non-finite logits at step {step}, prompt {b}, codebook {kb} "
        f"({'conditional' if half == 0 else 'unconditional'} branch): {int(np.isnan(bad).sum())} NaN, "
        f"{int(np.isinf(bad).sum())} inf of {bad.size}; pass on_nonfinite='replace' to carry on")


def some_token_left(scores: np.ndarray, step: int) -> None:
    """Every codebook of every prompt must keep a finite logit, else an error naming them."""
    left = np.isfinite(scores).any(axis=-1) & ~np.isnan(scores).any(axis=-1)   # [B, K]
    if not left.all():
        b, kb = map(int, np.argwhere(~left)[0])
        raise FloatingPointError(f"no token left to choose at step {step}, prompt {b}, codebook {kb}: every "
                                 "logit is -inf or NaN (a hook or the filters removed them all)")
