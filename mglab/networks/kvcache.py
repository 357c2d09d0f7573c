"""The decoder's KV cache: self-attention keys/values (one more position a step) and cross-attention ones.

Two forms hold the same numbers::

    concatenating (the exported graph)          in place (mglab.onnx.inplace_kv's rewritten graph)
    key[i]: [H*B, heads, length, head_dim]      key[i]: [H*B, heads, capacity, head_dim]
    a new array each step, one longer           one buffer, positions [0, length) filled, bound once
                                                with ONNX Runtime's IO binding (no per-step copies)

:meth:`KVCache.keys` and :meth:`KVCache.values` give the filled part either way; the arrays are only ever
edited in place, so a binding stays valid.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class KVCache:
    """Per-layer keys and values; ``bound`` is the in-place graph's IO binding, or None."""

    key: list[np.ndarray] = field(default_factory=list)          # [H*B, heads, pos or capacity, head_dim]
    value: list[np.ndarray] = field(default_factory=list)
    cross_key: list[np.ndarray] = field(default_factory=list)    # [H*B, heads, text_len, head_dim] per layer
    cross_value: list[np.ndarray] = field(default_factory=list)
    length: int = 0
    bound: object = None

    @property
    def capacity(self) -> int:
        """Positions the key arrays hold: the buffer's size in place, the length when concatenating; 0 if empty."""
        return self.key[0].shape[2] if self.key else 0

    def keys(self, layer: int) -> np.ndarray:
        """The filled part of ``layer``'s key cache, ``[H*B, heads, length, head_dim]`` (a view)."""
        return self.key[layer][:, :, :self.length]                   # [H*B, heads, length, head_dim]

    def values(self, layer: int) -> np.ndarray:
        """The filled part of ``layer``'s value cache, ``[H*B, heads, length, head_dim]`` (a view)."""
        return self.value[layer][:, :, :self.length]                 # [H*B, heads, length, head_dim]

    @classmethod
    def empty(cls, rows: int, layers: int, heads: int, head_dim: int, dtype=np.float32) -> "KVCache":
        """A cache of no position: what the first step (merged decoder) is fed."""
        e = np.zeros((rows, heads, 0, head_dim), dtype=dtype)                # [H*B, heads, 0, hd]
        return cls([e] * layers, [e] * layers, [e] * layers, [e] * layers)

    def feeds(self) -> dict[str, np.ndarray]:
        """The ``past_key_values.*`` inputs of the exported graphs."""
        out = {}
        for i in range(len(self.key)):
            out[f"past_key_values.{i}.decoder.key"] = self.key[i]
            out[f"past_key_values.{i}.decoder.value"] = self.value[i]
            out[f"past_key_values.{i}.encoder.key"] = self.cross_key[i]
            out[f"past_key_values.{i}.encoder.value"] = self.cross_value[i]
        return out

    def to_buffers(self, capacity: int, dtype) -> "KVCache":
        """Copy the self-attention cache into ``capacity``-long buffers (the in-place form), in place."""
        rows, heads, _, hd = self.key[0].shape
        for kv in (self.key, self.value):
            for i, a in enumerate(kv):
                buf = np.zeros((rows, heads, capacity, hd), dtype=dtype)     # [H*B, heads, capacity, hd]
                buf[:, :, :a.shape[2]] = a
                kv[i] = buf
        return self
