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

from . import graph
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

    def __init__(self, paths: dict[str, Path], config: MusicGenConfig, *, providers=None):
        """``paths``: ``{"decoder_model_merged": ...}`` or ``{"decoder_model": ..., "decoder_with_past_model": ...}``."""
        self.config, self._providers = config, providers
        self.layout = "merged" if "decoder_model_merged" in paths else "split"
        rename = {"decoder_model_merged": "merged", "decoder_model": "first", "decoder_with_past_model": "with_past"}
        self.paths = {rename[k]: Path(v) for k, v in paths.items()}
        self.plain = {k: Session(p, providers) for k, p in self.paths.items()}
        self._with_attention = None

    def sessions(self, attention: bool = False) -> dict[str, Session]:
        """The graphs to run: the exported ones, or (``attention=True``) copies that also output the
        attention probabilities ``attentions.{i}.self`` / ``attentions.{i}.cross`` (built once, cached)."""
        if not attention:
            return self.plain
        if self._with_attention is None:
            self._with_attention = {k: Session(graph.with_attention(p), self._providers)
                                    for k, p in self.paths.items()}
        return self._with_attention

    @property
    def providers(self) -> list[str]:
        return next(iter(self.plain.values())).providers

    def input_names(self) -> list[str]:
        return [n for s in self.plain.values() for n in s.input_names]

    def step(self, input_ids: np.ndarray, hidden: np.ndarray, mask: np.ndarray, cache: KVCache | None,
             attention: bool = False) -> tuple[np.ndarray, KVCache, dict | None]:
        """One step: ``input_ids [H*B*K, 1]`` with the text ``hidden [H*B, n, d]``, ``mask [H*B, n]``.

        Returns the next-token logits ``[H*B*K, V]``, the cache grown by one position and, with
        ``attention=True``, ``{"self": [...], "cross": [...]}`` per-layer probabilities
        ``[H*B, heads, 1, pos]`` / ``[H*B, heads, 1, n]`` (else None). ``cache=None`` starts a sequence.
        """
        sessions = self.sessions(attention)
        feeds = {"input_ids": input_ids, "encoder_hidden_states": hidden, "encoder_attention_mask": mask}
        first = cache is None
        if first:
            cache = self._empty_cache(hidden.shape[0])
        feeds.update(self._past_feeds(cache))
        if self.layout == "merged":
            feeds["use_cache_branch"] = np.array([not first])
            out = sessions["merged"].run(feeds)
        else:
            out = sessions["first" if first else "with_past"].run(feeds)
        n = self.config.num_layers
        new = KVCache(key=[out[f"present.{i}.decoder.key"] for i in range(n)],
                      value=[out[f"present.{i}.decoder.value"] for i in range(n)],
                      cross_key=cache.cross_key, cross_value=cache.cross_value)
        if first:  # the cross-attention keys/values are computed once, on the first step
            new.cross_key = [out[f"present.{i}.encoder.key"] for i in range(n)]
            new.cross_value = [out[f"present.{i}.encoder.value"] for i in range(n)]
        attn = None
        if attention:
            attn = {kind: [out[f"attentions.{i}.{kind}"] for i in range(n)] for kind in ("self", "cross")}
        return out["logits"][:, -1, :].astype(np.float32, copy=False), new, attn   # [H*B*K, V]

    def run_hooks(self, hooks, step: int, cache: KVCache, attn: dict | None) -> KVCache:
        """The decoder's per-layer hook points after one step; edits land in the cache the next step reads."""
        for i in range(self.config.num_layers):
            p = f"decoder.layers.{i}."
            cache.key[i] = hooks(p + "hook_key", cache.key[i], step, i)
            cache.value[i] = hooks(p + "hook_value", cache.value[i], step, i)
            if step == 0:
                cache.cross_key[i] = hooks(p + "hook_cross_key", cache.cross_key[i], None, i)
                cache.cross_value[i] = hooks(p + "hook_cross_value", cache.cross_value[i], None, i)
            if attn is not None:
                hooks(p + "hook_self_attn", attn["self"][i], step, i)
                hooks(p + "hook_cross_attn", attn["cross"][i], step, i)
        return cache

    def _empty_cache(self, rows: int) -> KVCache:
        c = self.config
        cached = self.plain.get("merged") or self.plain["with_past"]
        dtype = cached.float_type("past_key_values.0.decoder.key")             # float32, or float16 graphs
        empty = np.zeros((rows, c.num_heads, 0, c.head_dim), dtype=dtype)       # [H*B, heads, 0, hd]
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
