"""MusicGen-Melody's networks: the condition graph and a decoder whose condition is a prefix, not cross-attention.

The melody model (``python -m mglab export`` of a ``musicgen_melody`` checkpoint, :mod:`mglab.onnx.export_melody`)
prepends its condition to the decoder's input::

    prefix [H*B, P, d] = cat([chroma projected (chroma_length rows), text projected and masked (n rows)])
    step 0:   decoder_model(prefix, input_ids [H*B*K, 1])  -> logits, self-attention cache of P + 1 positions
    step t:   decoder_with_past_model(input_ids, past)       -> logits, the cache one position longer

Positions run over prefix and codes; the mask is causal over both (the prefix included); the decoder has no
padding mask (padded text positions are zero vectors it attends to, as in transformers). After the first step
the prefix lives in the self-attention cache, so the key/value hooks see its P positions first. Later steps run
the in-place KV rewrite (:mod:`mglab.onnx.inplace_kv`) as MusicGen's decoder does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..onnx.session import Session
from .decoder import Decoder
from .kvcache import KVCache


class Conditioner:
    """``melody_condition.onnx``: text states, mask and chroma (``chroma_length`` frames) -> the prefix."""

    def __init__(self, path: Path, providers=None):
        self.session = Session(path, providers)
        self.chroma_length = self.session.session.get_inputs()[2].shape[1]      # [b, chroma_length, 12]

    def prefix(self, hidden: np.ndarray, mask: np.ndarray, chroma: np.ndarray) -> np.ndarray:
        """``hidden [R, n, d_text]``, ``mask [R, n]``, ``chroma [R, chroma_length, 12]`` -> ``[R, L + n, d]``."""
        out = self.session.run({"encoder_hidden_states": hidden, "encoder_attention_mask": mask.astype(np.int64),
                                "input_features": chroma.astype(np.float32)})
        return out["prefix_embeds"]


class MelodyDecoder(Decoder):
    """The melody decoder: :meth:`~mglab.networks.decoder.Decoder.step` takes the prefix ``[H*B, P, d]`` where
    MusicGen's takes the text."""

    def step(self, input_ids: np.ndarray, hidden: np.ndarray, mask, cache: KVCache | None,
             attention: bool = False, capacity: int | None = None, resid=None):
        """One step: ``input_ids [H*B*K, 1]``; ``hidden`` is the prefix (read on the first step only), ``mask``
        unused. ``capacity``: the steps of the window (the prefix's positions are added to it). Returns
        ``(logits [H*B*K, V], cache, None)``."""
        if attention or resid is not None:
            raise NotImplementedError("attention and residual-stream hooks are not available for melody models "
                                      "yet (their graphs are not rewritten); key/value hooks are")
        if cache is not None and cache.bound is not None:
            return self._step_inplace(input_ids, cache), cache, None
        first, n = cache is None, self.config.num_layers
        feeds = {"input_ids": input_ids}
        if first:
            feeds["prefix_embeds"] = hidden                                       # [H*B, P, d]
        else:
            feeds.update({f"past_key_values.{i}.decoder.{kind}": kv[i] for i in range(n)
                          for kind, kv in (("key", cache.key), ("value", cache.value))})
        out = self.session("first" if first else "with_past").run(feeds)
        key = [out[f"present.{i}.decoder.key"] for i in range(n)]                 # [H*B, heads, pos, hd]
        new = KVCache(key=key, value=[out[f"present.{i}.decoder.value"] for i in range(n)],
                      length=key[0].shape[2])
        if first and capacity and self.inplace is not None:
            dtype = self.inplace.input_dtypes["past_key_values.0.decoder.key"]
            new.bound = self._bind_melody(new.to_buffers(hidden.shape[1] + capacity, dtype), input_ids)
        return out["logits"][:, -1, :].astype(np.float32, copy=False), new, None   # [H*B*K, V]

    def _bind_melody(self, cache: KVCache, input_ids: np.ndarray):
        """The in-place graph bound to the cache buffers (past and present are one array per layer)."""
        session = self.inplace
        rows = cache.key[0].shape[0]
        logits = np.zeros((input_ids.shape[0], 1, self.config.vocab_size), dtype=session.output_dtypes["logits"])
        feeds = {"input_ids": np.zeros_like(input_ids), "seqlens_k": np.zeros(rows, dtype=np.int32),
                 "total_sequence_length": np.zeros(1, dtype=np.int32)}
        outputs = {"logits": logits}                                               # [H*B*K, 1, V]
        for i in range(self.config.num_layers):
            for kind, kv in (("key", cache.key), ("value", cache.value)):
                feeds[f"past_key_values.{i}.decoder.{kind}"] = kv[i]
                outputs[f"present.{i}.decoder.{kind}"] = kv[i]
        return session.bind(feeds, outputs)
