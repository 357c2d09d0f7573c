"""Stage 3 of 7: the MusicGen decoder, one token per codebook per step, with its KV cache.

Two export layouts run the same network:

* **split**: ``decoder_model.onnx`` for the first step (it also computes the cross-attention keys/values
  from the text), then ``decoder_with_past_model.onnx`` for every later step.
* **merged**: ``decoder_model_merged.onnx`` holds both behind an ``If`` on the input ``use_cache_branch``.
  The first step must still feed every ``past_key_values.*`` input: zero-length tensors
  ``[2B, heads, 0, head_dim]`` with ``use_cache_branch=False``. The cross-attention keys/values come back
  from that step only (on the cached branch the ``present.*.encoder.*`` outputs are empty) and are fed back
  as ``past_key_values.*.encoder.*`` on every later step.

Every later step runs, on the CPU, the with-past graph rewritten by :mod:`mglab.onnx.inplace_kv`: the self-attention
cache is one preallocated buffer per layer ``[H*B, heads, capacity, head_dim]`` that the graph writes one
position into, bound once with ONNX Runtime's IO binding (no per-step copies). The exported graph, which
concatenates a growing cache, still runs when the rewrite does not apply (another exporter's graph, a non-CPU
provider, attention hooks, no ``capacity`` given).

Shapes: ``input_ids`` ``[H*B*K, 1]`` (row r is prompt r // K, codebook r % K; H = 2 with guidance), logits
``[H*B*K, V]``, self-attention cache ``[H*B, heads, pos, head_dim]``, cross ``[H*B, heads, text_len, head_dim]``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ..core.config import MusicGenConfig
from ..onnx import attention as attention_graph
from ..onnx import inplace_kv as inplace
from ..onnx import residual_graph as residual
from ..onnx.session import Session
from .kvcache import KVCache


class Decoder:
    """Runs one decoding step; ``layout`` is ``'merged'`` or ``'split'``."""

    def __init__(self, paths: dict[str, Path], config: MusicGenConfig, *, providers=None, inplace_cache=True):
        """``paths``: ``{"decoder_model_merged": ...}`` or
        ``{"decoder_model": ..., "decoder_with_past_model": ...}``."""
        self.config, self._providers = config, providers
        self.layout = "merged" if "decoder_model_merged" in paths else "split"
        rename = {"decoder_model_merged": "merged", "decoder_model": "first", "decoder_with_past_model": "with_past"}
        self.paths = {rename[k]: Path(v) for k, v in paths.items()}
        self._plain = {}
        self._rewritten = {}
        self._inplace_resid = None
        self.first = self._session("merged" if self.layout == "merged" else "first")
        self._check_layers()
        self.inplace = self._inplace_session() if inplace_cache else None
        if self.inplace is None:
            self._session("merged" if self.layout == "merged" else "with_past")

    def _session(self, kind: str) -> Session:
        if kind not in self._plain:
            self._plain[kind] = Session(self.paths[kind], self._providers)
        return self._plain[kind]

    def _check_layers(self) -> None:
        layers = len([n for n in self.first.output_names if n.startswith("present.") and n.endswith(".decoder.key")])
        if layers != self.config.num_layers:
            raise ValueError(f"config.json says {self.config.num_layers} decoder layers but the decoder graph "
                             f"has {layers}")

    def _inplace_session(self) -> Session | None:
        """The rewritten with-past graph; None off the CPU or (with a warning) for a graph it cannot rewrite."""
        if self.first.providers[0] != "CPUExecutionProvider":
            return None
        src = self.paths.get("with_past") or self.paths["merged"]
        try:
            path = inplace.with_inplace_cache(src, self.config.num_layers, self.config.num_heads)
        except inplace.Unmatched as err:
            warnings.warn(f"{src.name}: the KV cache stays concatenating (slower on long runs): {err}",
                          RuntimeWarning, stacklevel=4)
            return None
        return Session(path, self._providers)

    def session(self, kind: str, attention: bool = False, resid: bool = False) -> Session:
        """The exported graph ``kind`` (``merged``, ``first`` or ``with_past``), or its copy (built once,
        cached) that also outputs the attention probabilities ``attentions.{i}.self`` / ``.cross``
        (``attention=True``) and the residual stream's points (``resid=True``, :mod:`mglab.onnx.residual_graph`; a
        merged decoder's branches are then run as graphs of their own: ``kind`` is ``first`` or
        ``with_past``)."""
        if not (attention or resid):
            return self._session(kind)
        if (kind, attention, resid) not in self._rewritten:
            path = self.paths.get(kind)
            if resid:
                branch = {"first": "else_branch", "with_past": "then_branch"}[kind] if self.layout == "merged" else None
                path = residual.with_residual(self.paths["merged"] if branch else path, self.config.num_layers, branch)
            if attention:
                path = attention_graph.with_attention(path)
            self._rewritten[kind, attention, resid] = Session(path, self._providers)
        return self._rewritten[kind, attention, resid]

    def _inplace_for(self, resid: bool) -> Session | None:
        """The in-place graph, with the residual points when ``resid``."""
        if not resid or self.inplace is None:
            return self.inplace
        if self._inplace_resid is None:
            src = self.paths.get("with_past") or self.paths["merged"]
            c = self.config
            self._inplace_resid = Session(inplace.with_inplace_cache(src, c.num_layers, c.num_heads, resid=True),
                                          self._providers)
        return self._inplace_resid

    @property
    def providers(self) -> list[str]:
        """The ONNX Runtime execution providers the decoder's sessions run on."""
        return self.first.providers

    def step(self, input_ids: np.ndarray, hidden: np.ndarray, mask: np.ndarray, cache: KVCache | None,
             attention: bool = False, capacity: int | None = None,
             resid=None) -> tuple[np.ndarray, KVCache, dict | None]:
        """One step: ``input_ids [H*B*K, 1]`` with the text ``hidden [H*B, n, d]``, ``mask [H*B, n]``.

        Returns the next-token logits ``[H*B*K, V]``, the cache grown by one position and, with
        ``attention=True``, ``{"self": [...], "cross": [...]}`` per-layer probabilities
        ``[H*B, heads, 1, pos]`` / ``[H*B, heads, 1, n]`` (else None). ``cache=None`` starts a sequence;
        ``capacity`` (the steps it will run) lets it use the in-place cache. ``resid(run, feeds)`` (from
        :func:`mglab.decoding.residual_step.stepper`) runs the step with the residual stream's hooks.
        """
        if cache is not None and cache.bound is not None:
            return self._step_inplace(input_ids, cache, resid), cache, None
        first = cache is None
        feeds = {"input_ids": input_ids, "encoder_hidden_states": hidden, "encoder_attention_mask": mask}
        if first:
            cache = self._empty_cache(hidden.shape[0])
        feeds.update(cache.feeds())
        if self.layout == "merged" and resid is None:                   # with resid: the branches run flat
            feeds["use_cache_branch"] = np.array([not first])
            kind = "merged"
        else:
            kind = "first" if first else "with_past"
        session = self.session(kind, attention, resid is not None)
        if resid is None:
            out = session.run(feeds)
        else:
            feeds.update(self._edit_feeds(session, hidden.shape[0]))
            out = resid(lambda: session.run(feeds), feeds)
        n = self.config.num_layers
        new = KVCache(key=[out[f"present.{i}.decoder.key"] for i in range(n)],
                      value=[out[f"present.{i}.decoder.value"] for i in range(n)],
                      cross_key=cache.cross_key, cross_value=cache.cross_value, length=cache.length + 1)
        if first:  # the cross-attention keys/values are computed once, on the first step
            new.cross_key = [out[f"present.{i}.encoder.key"] for i in range(n)]
            new.cross_value = [out[f"present.{i}.encoder.value"] for i in range(n)]
            if capacity and self.inplace is not None and not attention:
                fast = self._inplace_for(resid is not None)
                dtype = fast.input_dtypes["past_key_values.0.decoder.key"]
                new.bound = self._bind(fast, new.to_buffers(capacity, dtype), input_ids, hidden, mask)
        attn = None
        if attention:
            attn = {kind: [out[f"attentions.{i}.{kind}"] for i in range(n)] for kind in ("self", "cross")}
        return out["logits"][:, -1, :].astype(np.float32, copy=False), new, attn   # [H*B*K, V]

    # the in-place cache ------------------------------------------------------------------------------------
    def _edit_feeds(self, session: Session, rows: int) -> dict[str, np.ndarray]:
        dtype = session.input_dtypes["edit.resid.0.pre"]
        return residual.edit_feeds(self.config.num_layers, rows, self.config.hidden_size, dtype)

    def _bind(self, session: Session, cache: KVCache, input_ids, hidden, mask):
        """Bind the buffers as the in-place graph's past and present, with the text inputs and the small
        per-step arrays (refilled in place each step); the residual points too when ``session`` has them."""
        rows = cache.key[0].shape[0]
        ids = np.zeros_like(input_ids)                                     # [H*B*K, 1], refilled each step
        vocab = self.config.vocab_size
        logits = np.zeros((ids.shape[0], 1, vocab), dtype=session.output_dtypes["logits"])   # [H*B*K, 1, V]
        feeds = {"input_ids": ids, "encoder_hidden_states": hidden, "encoder_attention_mask": mask,
                 "seqlens_k": np.zeros(rows, dtype=np.int32), "total_sequence_length": np.zeros(1, dtype=np.int32)}
        outputs = {"logits": logits}
        if "edit.resid.0.pre" in session.input_names:                     # [H*B, 1, d] each
            feeds.update(self._edit_feeds(session, rows))
            d, dtype = self.config.hidden_size, session.output_dtypes["resid.0.pre"]
            outputs.update({p: np.zeros((rows, 1, d), dtype=dtype)
                            for p in residual.graph_points(self.config.num_layers)})
        for i in range(self.config.num_layers):
            for kind, kv, cross in (("key", cache.key, cache.cross_key), ("value", cache.value, cache.cross_value)):
                feeds[f"past_key_values.{i}.decoder.{kind}"] = kv[i]
                feeds[f"past_key_values.{i}.encoder.{kind}"] = cross[i]
                outputs[f"present.{i}.decoder.{kind}"] = kv[i]
        return session.bind(feeds, outputs)

    def _step_inplace(self, input_ids: np.ndarray, cache: KVCache, resid=None) -> np.ndarray:
        if cache.length >= cache.capacity:
            raise ValueError(f"the KV cache holds capacity={cache.capacity} positions and all are used")
        b = cache.bound
        b.arrays["input_ids"][...] = input_ids                            # [H*B*K, 1]
        b.arrays["seqlens_k"][...] = cache.length                         # [H*B]: positions before this one
        b.arrays["total_sequence_length"][...] = cache.length + 1
        if resid is None:
            b.run()
        else:
            resid(b.run, b.arrays)
        cache.length += 1
        return b.arrays["logits"][:, -1, :].astype(np.float32)            # [H*B*K, V], a copy

    def _empty_cache(self, rows: int) -> KVCache:
        c = self.config
        dtype = self.first.input_dtypes.get("past_key_values.0.decoder.key", np.float32)  # merged only
        return KVCache.empty(rows, c.num_layers, c.num_heads, c.head_dim, dtype)
