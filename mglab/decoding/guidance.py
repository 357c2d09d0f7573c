"""Stage 4 of 7: classifier-free guidance.

The decoder runs on a doubled batch (:mod:`mglab.decoding.conditioning` lays the rows out): rows ``[0, B)`` see the
prompt (conditional), rows ``[B, 2B)`` see the null condition, i.e. the text encoding replaced by zeros with
an all-zero attention mask (unconditional). Both halves are fed the same tokens. The guided logits are
``uncond + scale * (cond - uncond)``.
"""

from __future__ import annotations

import numpy as np


def is_guided(guidance_scale: float) -> bool:
    """A scale of exactly 1 is the conditional model alone: no unconditional half is run."""
    return guidance_scale != 1.0


def null_condition(hidden: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Append the unconditional half: ``[B, n, d], [B, n] -> [2B, n, d], [2B, n]``."""
    hidden = np.concatenate([hidden, np.zeros_like(hidden)], axis=0)          # [2B, n, d]
    mask = np.concatenate([mask, np.zeros_like(mask)], axis=0)                # [2B, n]
    return hidden, mask


def guide(cond: np.ndarray, uncond: np.ndarray, guidance_scale: float) -> np.ndarray:
    """``uncond + scale * (cond - uncond)``, all ``[B, K, V]``."""
    return uncond + guidance_scale * (cond - uncond)                          # [B, K, V]
