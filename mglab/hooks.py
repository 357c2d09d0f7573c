"""Hook points: look at, and edit, every stage of every decoding step.

Modelled on TransformerLens. A hook is a plain function ``fn(value, hook)``; ``hook.name``, ``hook.step``
(None for once-per-run points) and ``hook.layer`` describe the call. Returning None keeps the value;
returning an array replaces it (same shape and dtype, or an error naming the hook and both shapes)::

    def ban_token(logits, hook):                  # logits [B, K, V]
        logits[..., 17] = -np.inf                 # in-place edits count too
    with model.hooks([("guidance.hook_logits", ban_token)]):
        gen = model.generate("lofi piano")

Hook points, in the order one decoding step meets them (B prompts, K codebooks, V vocabulary, H = 2 with
guidance else 1, n text tokens, ``pos`` = positions in the self-attention cache after this step)::

    text_encoder.hook_hidden          [B, n, d]                      once
    text_encoder.hook_mask            [B, n]                         once
    decoder.hook_input_ids            [B, K]    delayed tokens fed   each step
    decoder.layers.{i}.hook_key       [H*B, heads, pos, head_dim]    each step
    decoder.layers.{i}.hook_value     [H*B, heads, pos, head_dim]    each step
    decoder.layers.{i}.hook_cross_key   [H*B, heads, n, head_dim]    once (after step 0)
    decoder.layers.{i}.hook_cross_value [H*B, heads, n, head_dim]    once (after step 0)
    decoder.layers.{i}.hook_self_attn  [H*B, heads, 1, pos]          each step, read-only
    decoder.layers.{i}.hook_cross_attn [H*B, heads, 1, n]            each step, read-only
    guidance.hook_cond_logits         [B, K, V]                      each step
    guidance.hook_uncond_logits       [B, K, V]                      each step, with guidance only
    guidance.hook_logits              [B, K, V] uncond + s*(cond-uncond)   each step
    sampler.hook_logits               [B, K, V] after temperature, top-k, top-p (removed = -inf)
    sampler.hook_tokens               [B, K]    sampled, before the delay mask
    delay.hook_tokens                 [B, K]    after the delay mask: the column written to ``tokens``
    codec.hook_codes                  [B, K, frames]                 once
    codec.hook_audio                  [B, channels, samples]         once

An edit to a key/value takes effect from the next step on (it is the cache the next step reads). Attention
probabilities are extra outputs of the ONNX graph (see :mod:`mglab.graph`), so they can be read, not edited.
"""

from __future__ import annotations

import difflib
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class HookPoint:
    """A named place in the pipeline: its shape convention, how often it fires, whether edits apply."""

    shape: str
    when: str            # "once" or "each step"
    editable: bool = True


@dataclass(frozen=True)
class Hook:
    """What a hook function is told about the call it is in."""

    name: str
    step: int | None = None      # decoding step (counted across windows), None for once-per-run points
    layer: int | None = None     # decoder layer, None elsewhere
    window: int | None = None    # long-form window the step belongs to (0 for runs of one window)


def hook_points(num_layers: int) -> dict[str, HookPoint]:
    """Every hook point of a model with ``num_layers`` decoder layers, in pipeline order."""
    step = "each step"
    points = {
        "text_encoder.hook_hidden": HookPoint("[batch, text_len, d]", "once"),
        "text_encoder.hook_mask": HookPoint("[batch, text_len]", "once"),
        "decoder.hook_input_ids": HookPoint("[batch, K]", step),
    }
    for i in range(num_layers):
        p = f"decoder.layers.{i}."
        points[p + "hook_key"] = HookPoint("[H*batch, heads, pos, head_dim]", step)
        points[p + "hook_value"] = HookPoint("[H*batch, heads, pos, head_dim]", step)
        points[p + "hook_cross_key"] = HookPoint("[H*batch, heads, text_len, head_dim]", "once")
        points[p + "hook_cross_value"] = HookPoint("[H*batch, heads, text_len, head_dim]", "once")
        points[p + "hook_self_attn"] = HookPoint("[H*batch, heads, 1, pos]", step, editable=False)
        points[p + "hook_cross_attn"] = HookPoint("[H*batch, heads, 1, text_len]", step, editable=False)
    points.update({
        "guidance.hook_cond_logits": HookPoint("[batch, K, vocab]", step),
        "guidance.hook_uncond_logits": HookPoint("[batch, K, vocab]", step),
        "guidance.hook_logits": HookPoint("[batch, K, vocab]", step),
        "sampler.hook_logits": HookPoint("[batch, K, vocab]", step),
        "sampler.hook_tokens": HookPoint("[batch, K]", step),
        "delay.hook_tokens": HookPoint("[batch, K]", step),
        "codec.hook_codes": HookPoint("[batch, K, frames]", "once"),
        "codec.hook_audio": HookPoint("[batch, channels, samples]", "once"),
    })
    return points


def is_kv(name: str) -> bool:
    return name.endswith(".hook_key") or name.endswith(".hook_value")


def is_attention(name: str) -> bool:
    return name.endswith("_attn")


def match(names_filter, names) -> list[str]:
    """The hook names a filter selects: a name, a list of names, a predicate, or None (all).

    Unknown names raise a ``KeyError`` that suggests the closest valid ones.
    """
    names = list(names)
    if names_filter is None:
        return names
    if callable(names_filter):
        return [n for n in names if names_filter(n)]
    wanted = [names_filter] if isinstance(names_filter, str) else list(names_filter)
    known = set(names)
    for name in wanted:
        if not isinstance(name, str) or name not in known:
            close = difflib.get_close_matches(str(name), names, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else "; see model.hook_names()"
            raise KeyError(f"unknown hook name {name!r}{hint}")
    return wanted


class HookRegistry:
    """The hooks attached to one model: ``name -> [fn, ...]``, called by the pipeline at each hook point."""

    def __init__(self, points: dict[str, HookPoint]):
        self.points = points
        self.table: dict[str, list] = {}
        self.window: int | None = None     # set by the pipeline while it decodes a window

    def __bool__(self) -> bool:
        return bool(self.table)

    def wants(self, name: str) -> bool:
        return name in self.table

    def wants_any(self, predicate) -> bool:
        return any(predicate(n) for n in self.table)

    def add(self, hooks) -> list[tuple[str, object]]:
        """Attach ``[(name_or_filter, fn), ...]``; returns the entries, for :meth:`remove`."""
        entries = []
        for item in hooks or []:
            if not (isinstance(item, tuple) and len(item) == 2 and callable(item[1])):
                raise TypeError(f"hooks: each entry must be (name_or_filter, fn), got {item!r}")
            names_filter, fn = item
            entries += [(name, fn) for name in match(names_filter, self.points)]
        for name, fn in entries:
            self.table.setdefault(name, []).append(fn)
        return entries

    def remove(self, entries) -> None:
        for name, fn in entries:
            fns = self.table.get(name, [])
            if fn in fns:
                fns.remove(fn)
            if not fns:
                self.table.pop(name, None)

    @contextmanager
    def scope(self, hooks):
        """Attach hooks for the ``with`` block; they are removed on exit, also when the block raises."""
        entries = self.add(hooks)
        try:
            yield self
        finally:
            self.remove(entries)

    def __call__(self, name: str, value, step: int | None = None, layer: int | None = None):
        """Run the hooks of ``name`` on ``value``; return the (possibly replaced) value."""
        fns = self.table.get(name)
        if not fns:
            return value
        hook = Hook(name, step, layer, self.window)
        for fn in list(fns):
            try:
                out = fn(value, hook)
            except Exception as err:
                where = f" at step {step}" if step is not None else ""
                raise RuntimeError(f"hook {getattr(fn, '__name__', fn)!r} on {name!r}{where} raised "
                                   f"{type(err).__name__}: {err}") from err
            if out is not None:
                value = _checked(name, value, out, self.points[name], step)
        return value


def _checked(name, old, new, point: HookPoint, step):
    where = f" at step {step}" if step is not None else ""
    if not point.editable:
        raise ValueError(f"hook on {name!r}{where} returned a value, but {name} is read-only "
                         "(attention probabilities are outputs of the graph, not inputs)")
    new = np.asarray(new)
    if new.shape != old.shape:
        raise ValueError(f"hook on {name!r}{where} returned shape {new.shape}, expected {old.shape}")
    if new.dtype != old.dtype:
        if not np.can_cast(new.dtype, old.dtype, casting="same_kind"):
            raise ValueError(f"hook on {name!r}{where} returned dtype {new.dtype}, expected {old.dtype}")
        new = new.astype(old.dtype)
    return new
