"""Stage 2 of 7: the conditions the decoder attends to, and the layout of its rows.

With B prompts, K codebooks and H halves (H = 2 with classifier-free guidance, else 1), every decoder tensor
lays its rows out the same way, decided here once::

    text rows  [H*B, n, d]      half 0: the prompts (conditional)
                                half 1: the null condition (zeros, mask 0) or the negative prompts
    token rows [H*B*K, 1]       row r: half r // (B*K), prompt (r // K) % B, codebook r % K
    logits     [H*B*K, V]  ->   cond [B, K, V], uncond [B, K, V]

Both halves are fed the same tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import guidance


@dataclass
class Condition:
    """The text side of a run: ``hidden [H*B, n, d]`` and ``mask [H*B, n]``, ``halves`` = H."""

    hidden: np.ndarray
    mask: np.ndarray
    batch: int

    @property
    def halves(self) -> int:
        """H: 2 with guidance (conditional rows, then null), else 1."""
        return self.hidden.shape[0] // self.batch


def condition(text, prompts: list[str], negative: list[str] | None, guided: bool, hooks,
              null: bool = False) -> Condition:
    """Encode ``prompts`` (and ``negative``) into the rows the decoder attends to.

    ``text`` is a :class:`mglab.networks.text.TextEncoder`; ``hooks`` the call's hooks (the text points fire here).
    ``null``: no prompt at all (unconditional continuation): the conditional half is the null condition too.
    """
    batch = len(prompts)
    ids, mask = text.tokenize(prompts + (negative or []))                     # [B (+B), n]
    encoded = text.encode(ids, mask)                                          # [B (+B), n, d]
    if null:
        encoded[:batch], mask[:batch] = 0, 0                                  # zeros, mask 0: as guidance's
    hidden = hooks("text_encoder.hook_hidden", encoded[:batch])               # [B, n, d]
    cond_mask = hooks("text_encoder.hook_mask", mask[:batch])                 # [B, n]
    if negative:                                                              # uncond = the negative prompt
        hidden = np.concatenate([hidden, encoded[batch:]])                    # [2B, n, d]
        mask = np.concatenate([cond_mask, mask[batch:]])                      # [2B, n]
    elif guided:
        hidden, mask = guidance.null_condition(hidden, cond_mask)             # [2B, n, d], [2B, n]
    else:
        mask = cond_mask
    return Condition(hidden, mask, batch)


def to_rows(tokens: np.ndarray, halves: int) -> np.ndarray:
    """Tokens ``[B, K]`` -> decoder input rows ``[H*B*K, 1]`` (the same tokens in every half)."""
    return np.tile(tokens.reshape(-1, 1), (halves, 1))                        # [H*B*K, 1]


def from_rows(logits: np.ndarray, batch: int, num_codebooks: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Decoder logits ``[H*B*K, V]`` -> ``cond [B, K, V]`` and ``uncond [B, K, V]`` (None when H = 1)."""
    halves = logits.reshape(-1, batch, num_codebooks, logits.shape[-1])       # [H, B, K, V]
    return halves[0], (halves[1] if halves.shape[0] == 2 else None)


def row_index(row: int, batch: int, num_codebooks: int) -> tuple[int, int, int]:
    """Decoder row -> ``(half, prompt, codebook)``."""
    per_half = batch * num_codebooks
    return row // per_half, (row % per_half) // num_codebooks, row % num_codebooks
