"""Stage 2: the MusicGen decoder, one token per codebook per step, with its KV cache.

Two export layouts run the same network:

* **split**: ``decoder_model.onnx`` for the first step (it also computes the cross-attention keys/values
  from the text), then ``decoder_with_past_model.onnx`` for every later step.
* **merged**: ``decoder_model_merged.onnx`` holds both behind an ``If`` on the input ``use_cache_branch``.
  The first step must still feed every ``past_key_values.*`` input: zero-length tensors
  ``[2B, heads, 0, head_dim]`` with ``use_cache_branch=False``. The cross-attention keys/values come back
  from that step only (on the cached branch the ``present.*.encoder.*`` outputs are empty) and are fed back
  as ``past_key_values.*.encoder.*`` on every later step.

Shapes: ``input_ids`` ``[H*B*K, 1]`` (row r is prompt r // K, codebook r % K; H = 2 with guidance), logits
``[H*B*K, V]``, self-attention cache ``[H*B, heads, pos, head_dim]``, cross ``[H*B, heads, text_len, head_dim]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import files
from .config import MusicGenConfig
from .session import Session


@dataclass
class KVCache:
    """Per-layer keys and values: self-attention (grows by one position a step) and cross-attention (fixed)."""

    key: list[np.ndarray] = field(default_factory=list)          # [H*B, heads, pos, head_dim] per layer
    value: list[np.ndarray] = field(default_factory=list)
    cross_key: list[np.ndarray] = field(default_factory=list)    # [H*B, heads, text_len, head_dim] per layer
    cross_value: list[np.ndarray] = field(default_factory=list)

    @property
    def length(self) -> int:
        """Positions held in the self-attention cache."""
        return self.key[0].shape[2] if self.key else 0


class Decoder:
    """Runs one decoding step; ``layout`` is ``'merged'`` or ``'split'``."""

    def __init__(self, root: Path, config: MusicGenConfig, *, dtype: str = "fp32", layout: str = "merged",
                 providers=None):
        self.config, self.layout = config, layout
        if layout == "merged":
            self.merged = Session(files.find(root, "decoder_model_merged", dtype), providers)
        else:
            self.first = Session(files.find(root, "decoder_model", dtype), providers)
            self.with_past = Session(files.find(root, "decoder_with_past_model", dtype), providers)

    @property
    def sessions(self) -> list[Session]:
        return [self.merged] if self.layout == "merged" else [self.first, self.with_past]

    def step(self, input_ids: np.ndarray, hidden: np.ndarray, mask: np.ndarray,
             cache: KVCache | None) -> tuple[np.ndarray, KVCache]:
        """One step: ``input_ids [H*B*K, 1]`` with the text ``hidden [H*B, n, d]``, ``mask [H*B, n]``.

        Returns the next-token logits ``[H*B*K, V]`` and the cache grown by one position. ``cache=None``
        starts a sequence.
        """
        feeds = {"input_ids": input_ids, "encoder_hidden_states": hidden, "encoder_attention_mask": mask}
        first = cache is None
        if first:
            cache = self._empty_cache(hidden.shape[0])
        feeds.update(self._past_feeds(cache))
        if self.layout == "merged":
            feeds["use_cache_branch"] = np.array([not first])
            out = self.merged.run(feeds)
        else:
            out = (self.first if first else self.with_past).run(feeds)
        n = self.config.num_layers
        new = KVCache(key=[out[f"present.{i}.decoder.key"] for i in range(n)],
                      value=[out[f"present.{i}.decoder.value"] for i in range(n)],
                      cross_key=cache.cross_key, cross_value=cache.cross_value)
        if first:  # the cross-attention keys/values are computed once, on the first step
            new.cross_key = [out[f"present.{i}.encoder.key"] for i in range(n)]
            new.cross_value = [out[f"present.{i}.encoder.value"] for i in range(n)]
        return out["logits"][:, -1, :], new                                   # [H*B*K, V]

    def _empty_cache(self, rows: int) -> KVCache:
        c = self.config
        empty = np.zeros((rows, c.num_heads, 0, c.head_dim), dtype=np.float32)   # [H*B, heads, 0, hd]
        n = c.num_layers
        return KVCache([empty] * n, [empty] * n, [empty] * n, [empty] * n)

    def _past_feeds(self, cache: KVCache) -> dict[str, np.ndarray]:
        feeds = {}
        for i in range(self.config.num_layers):
            feeds[f"past_key_values.{i}.decoder.key"] = cache.key[i]
            feeds[f"past_key_values.{i}.decoder.value"] = cache.value[i]
            feeds[f"past_key_values.{i}.encoder.key"] = cache.cross_key[i]
            feeds[f"past_key_values.{i}.encoder.value"] = cache.cross_value[i]
        return feeds
