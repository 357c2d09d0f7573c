"""nano-magnet's objective: audiocraft MAGNeT's (``solvers/magnet.py``), the stage drawn per example.

Used by ``scripts/train_nano_magnet.py`` (which trains with it) and its tests; imports ``nano_magnet`` (the model)
and :mod:`mglab.nano.corpus` (the data), nothing of the training loop.

- stage ``s`` uniform in 0..3; codebooks below it given, above it all masked (token ``card``), and the
  self-attention mask of the row full for stage 0, ``|i - j| <= subcodes_context`` above (what the export runs;
  ``--context``, default 5 as audiocraft's; -1 leaves every stage unrestricted, as audiocraft reads it);
- codebook ``s`` masked at rate ``cos(pi/2 * u)``, ``u ~ U(0, 1)``, in spans of ``span_len``: the rate is rounded
  to a percent and turned into a number of span starts whose expected masked share is that rate
  (:func:`span_starts_table`), the starts drawn uniformly, each span reaching ``span_len`` to its right;
- cross-entropy on the masked positions of codebook ``s`` only (mean over the batch's masked positions).

20% of examples get the null condition (one zero text vector), as guidance feeds it. :func:`guided_loss` is the
last stage's: the guided logits MAGNeT's decoding samples from, trained on every clip beside its null row.
"""

from __future__ import annotations

import functools
import math

import nano_magnet as magnet
import numpy as np

from mglab.nano import corpus

DROPOUT = 0.2                     # share of examples trained with the null condition
SECONDS = (4.0, 6.0)              # clip lengths, drawn per step with SECONDS_P
SECONDS_P = (2 / 3, 1 / 3)
# As nano-musicgen: where the data never goes, cross-entropy leaves the conditional and unconditional tails
# free, and guidance (MAGNeT's starts at 10) multiplies their ratio. A small smoothing gives both one floor.
LABEL_SMOOTHING = 1e-3
GUIDED_CFG = (10.0, 1.0)          # MAGNeT's max_cfg_coef, min_cfg_coef: what its decoding anneals between


@functools.lru_cache
def span_starts_table(frames: int, span_len: int) -> np.ndarray:
    """``[101]``: for a masking rate of m percent, the number of span starts ``u`` whose expected masked share
    ``1 - C(T - L, u) / C(T, u)`` first reaches m / 100 (audiocraft's ``_calc_mean_maskrate_to_u_LUT``)."""
    shares, kept = [0.0], (frames - span_len) / frames
    for u in range(1, frames):
        shares.append(1 - kept)
        kept *= (frames - span_len - u) / (frames - u)
    return np.searchsorted(shares, np.arange(101) / 100).astype(np.int64)     # side 'left', as audiocraft


def mask_rates(rng: np.random.Generator, count: int) -> np.ndarray:
    """The cosine schedule: ``cos(pi/2 * u)``, ``u ~ U(0, 1)`` ``[count]``."""
    return np.cos(rng.random(count) * math.pi * 0.5)


def span_mask(rates: np.ndarray, frames: int, span_len: int, rng: np.random.Generator) -> np.ndarray:
    """Boolean ``[B, T]``: spans of ``span_len`` (cut at the clip's end) at uniformly drawn starts, as many as
    :func:`span_starts_table` gives for each row's rate (at least one)."""
    starts = span_starts_table(frames, span_len)[np.round(100 * rates).astype(np.int64)].clip(min=1)   # [B]
    order = rng.random((len(rates), frames)).argsort(-1)                        # [B, T] a permutation per row
    mask = order < starts[:, None]                                              # [B, T] span starts
    out = mask.copy()
    for shift in range(1, span_len):
        out[:, shift:] |= mask[:, :-shift]
    return out


def masked_inputs(codes: np.ndarray, stages: np.ndarray, stage_mask: np.ndarray, card: int):
    """Inputs ``[B, K, T]`` (codebooks above the stage and the stage's masked positions set to ``card``) and
    the loss mask ``[B, K, T]`` (the stage's masked positions only)."""
    k = np.arange(codes.shape[1])[None, :, None]                                # [1, K, 1]
    stage = stages[:, None, None]                                               # [B, 1, 1]
    loss_mask = (k == stage) & stage_mask[:, None, :]                           # [B, K, T]
    inputs = np.where(loss_mask | (k > stage), card, codes)                     # [B, K, T]
    return inputs, loss_mask


def masked_loss(logits, codes, loss_mask, smoothing: float = 0.0):
    """Cross-entropy of ``logits`` ``[B, K, T, V]`` against ``codes`` ``[B, K, T]`` over the positions of
    ``loss_mask`` ``[B, K, T]`` (mean over them)."""
    import torch

    return torch.nn.functional.cross_entropy(logits[loss_mask], codes[loss_mask], label_smoothing=smoothing)


def draw_batch(rng: np.random.Generator, size: int, seconds: float, span_len: int, card: int,
               dropout: float = DROPOUT) -> dict:
    """Clips of ``seconds`` with their prompts (``None``: the null condition), stages, inputs and loss masks."""
    clips = [corpus.example(rng, seconds) for _ in range(size)]
    codes = np.stack([c.codes for c in clips])                                  # [B, K, T]
    keep = rng.random(size) >= dropout                                          # [B]
    stages = rng.integers(0, codes.shape[1], size)                              # [B]
    stage_mask = span_mask(mask_rates(rng, size), codes.shape[-1], span_len, rng)   # [B, T]
    inputs, loss_mask = masked_inputs(codes, stages, stage_mask, card)
    return dict(prompts=[c.prompt if k else None for c, k in zip(clips, keep)], codes=codes, stages=stages,
                inputs=inputs, loss_mask=loss_mask)


def step_loss(lm, b: dict, smoothing: float):
    """(training loss, plain masked cross-entropy) of batch ``b`` (:func:`draw_batch`)."""
    import torch

    t = {k: torch.from_numpy(b[k]) for k in ("codes", "stages", "inputs", "loss_mask")}
    logits = magnet.forward(lm, t["inputs"], magnet.conditions(lm, b["prompts"]), t["stages"])   # [B, K, T, V]
    loss = masked_loss(logits, t["codes"], t["loss_mask"], smoothing)
    with torch.no_grad():
        plain = masked_loss(logits, t["codes"], t["loss_mask"])
    return loss, float(plain)


def guided_loss(lm, b: dict, smoothing: float, max_cfg: float = GUIDED_CFG[0], min_cfg: float = GUIDED_CFG[1]):
    """(training loss, plain masked cross-entropy of the guided logits) of batch ``b``, each clip run with its
    condition and with the null one: the masked cross-entropy of the conditional logits ``c``, the null ones
    ``u`` and their mix ``u + g (c - u)``, which is what MAGNeT's decoding samples from and no other term trains.
    ``g`` is the coefficient decoding uses at the clip's masked share ``m`` of its stage's codebook (``m max_cfg
    + (1 - m) min_cfg``: 10 with all masked, annealed to 1)."""
    import torch

    t = {k: torch.from_numpy(b[k]) for k in ("codes", "stages", "inputs", "loss_mask")}
    n = len(b["prompts"])
    rows = torch.cat([t["inputs"], t["inputs"]])                                # [2B, K, T]
    cond = magnet.conditions(lm, list(b["prompts"]) + [None] * n)
    logits = magnet.forward(lm, rows, cond, torch.cat([t["stages"], t["stages"]]))   # [2B, K, T, V]
    c, u = logits[:n], logits[n:]                                               # [B, K, T, V] each
    share = t["loss_mask"].any(1).float().mean(-1)                              # [B]: the stage's masked share
    g = (share * max_cfg + (1 - share) * min_cfg)[:, None, None, None]          # [B, 1, 1, 1]
    guided = u + g * (c - u)                                                    # [B, K, T, V]
    loss = sum(masked_loss(x, t["codes"], t["loss_mask"], smoothing) for x in (c, u, guided))
    with torch.no_grad():
        plain = masked_loss(guided, t["codes"], t["loss_mask"])
    return loss, float(plain)
