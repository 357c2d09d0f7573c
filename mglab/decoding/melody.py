"""MusicGen-Melody's stage 2 (conditioning): text and chroma become the prefix the decoder reads before the codes.

As transformers' ``MusicgenMelodyForConditionalGeneration.generate`` builds it::

    chroma [B, F, 12] --repeat to >= chroma_length frames, cut--> [B, L, 12]    (L = chroma_length, 235)
    prefix rows [H*B, L + n, d] = cat([audio_enc_to_dec_proj(chroma), enc_to_dec_proj(text) * mask])
        half 0: the prompts and their melodies (no melody: the null chroma)
        half 1 (guidance): text zeros (mask 0) and the null chroma, one-hot on bin 0 (the negative prompt's
                           text instead of zeros when one is given)

``prompt=None`` is the null text in the conditional half too (zeros of the empty prompt's length, 1 token).
"""

from __future__ import annotations

import math

import numpy as np

from .conditioning import Condition

NUM_CHROMA = 12


def null_chroma(batch: int, frames: int = 1) -> np.ndarray:
    """The "no melody" chroma ``[batch, frames, 12]``: one-hot on bin 0, as transformers' null condition."""
    out = np.zeros((batch, frames, NUM_CHROMA), dtype=np.float32)
    out[..., 0] = 1.0
    return out


def fit_length(chroma: np.ndarray, length: int) -> np.ndarray:
    """``chroma [B, F, 12]`` repeated ``ceil(length / F)`` times and cut to ``[B, length, 12]`` (transformers)."""
    reps = max(1, math.ceil(length / chroma.shape[1]))
    return np.tile(chroma, (1, reps, 1))[:, :length]                          # [B, length, 12]


def check_chroma(chroma, batch: int) -> np.ndarray:
    """An edited ``conditioning.hook_chroma`` value must stay ``[batch, frames >= 1, 12]`` and finite."""
    c = np.asarray(chroma, dtype=np.float32)
    if c.ndim != 3 or c.shape[0] != batch or c.shape[1] < 1 or c.shape[2] != NUM_CHROMA:
        raise ValueError(f"chroma has shape {c.shape}: it must be [batch={batch}, frames >= 1, 12]")
    if not np.isfinite(c).all():
        raise ValueError("chroma holds NaN or inf")
    return c


def condition(text, conditioner, prompts: list[str], chroma: np.ndarray | None, negative: list[str] | None,
              guided: bool, hooks, null: bool = False) -> Condition:
    """The prefix rows ``[H*B, L + n, d]`` (``Condition.hidden``; its ``mask`` is None: the decoder has none).

    ``text``: a :class:`~mglab.networks.text.TextEncoder`; ``conditioner``: a
    :class:`~mglab.networks.melody.Conditioner`; ``chroma [B, F, 12]`` or None (no melody); ``null``: no prompt
    (the conditional text is the null one too). Fires ``text_encoder.hook_hidden``, ``text_encoder.hook_mask``
    and ``conditioning.hook_chroma``.
    """
    batch = len(prompts)
    ids, mask = text.tokenize(prompts + (negative or []))                     # [B (+B), n]
    encoded = text.encode(ids, mask)                                          # [B (+B), n, d_text]
    if null:
        encoded[:batch], mask[:batch] = 0, 0
    hidden = hooks("text_encoder.hook_hidden", encoded[:batch])               # [B, n, d_text]
    cond_mask = hooks("text_encoder.hook_mask", mask[:batch])                 # [B, n]
    given = null_chroma(batch) if chroma is None else chroma                  # [B, F, 12]
    given = check_chroma(hooks("conditioning.hook_chroma", given), batch)     # [B, F, 12]
    if negative or guided:
        uncond_hidden = encoded[batch:] if negative else np.zeros_like(hidden)   # [B, n, d_text]
        uncond_mask = mask[batch:] if negative else np.zeros_like(cond_mask)     # [B, n]
        hidden = np.concatenate([hidden, uncond_hidden])                      # [2B, n, d_text]
        cond_mask = np.concatenate([cond_mask, uncond_mask])                  # [2B, n]
        given = np.concatenate([given, null_chroma(batch, given.shape[1])])   # [2B, F, 12]
    prefix = conditioner.prefix(hidden, cond_mask, fit_length(given, conditioner.chroma_length))   # [H*B, P, d]
    return Condition(prefix, None, batch)
