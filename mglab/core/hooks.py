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
    decoder.layers.{i}.hook_resid_pre  [H*B, 1, d]   layer i's input      each step (see mglab.onnx.residual_graph)
    decoder.layers.{i}.hook_attn_out, hook_cross_attn_out, hook_mlp_out   each block's output, each step
    decoder.layers.{i}.hook_resid_post [H*B, 1, d]   layer i's output     each step
    decoder.hook_resid_final          [H*B, 1, d]   after the final layer norm          each step
    decoder.layers.{i}.hook_key       [H*B, heads, pos, head_dim]    each step
    decoder.layers.{i}.hook_value     [H*B, heads, pos, head_dim]    each step
    decoder.layers.{i}.hook_cross_key   [H*B, heads, n, head_dim]    once a window (after its first step)
    decoder.layers.{i}.hook_cross_value [H*B, heads, n, head_dim]    once a window (after its first step)
    decoder.layers.{i}.hook_self_attn  [H*B, heads, 1, pos]          each step, read-only
    decoder.layers.{i}.hook_cross_attn [H*B, heads, 1, n]            each step, read-only
    guidance.hook_cond_logits         [B, K, V]                      each step
    guidance.hook_uncond_logits       [B, K, V]                      each step, with guidance only
    guidance.hook_logits              [B, K, V] uncond + s*(cond-uncond)   each step
    sampler.hook_logits               [B, K, V] after temperature, top-k, top-p (removed = -inf)
    sampler.hook_tokens               [B, K]    sampled, before the delay mask
    delay.hook_tokens                 [B, K]    after the delay mask: the column written to ``tokens``
    codec.hook_codes                  [B, K, frames]                 once
    codec.hook_latent                 [B, D, frames] summed codebook vectors, before the codec's decoder
                                      (stereo: once per channel, hook.layer = channel; cached as [2, B, D, frames])
    codec.hook_audio                  [B, channels, samples]         once

An edit to a residual point changes everything downstream at that step (later layers, the logits, the
keys and values cached for later steps). An edit to a key/value takes effect from the next step on (it is
the cache the next step reads). Attention probabilities are extra outputs of the ONNX graph (see
:mod:`mglab.onnx.graphfile`), so they can be read, not edited.

Every :class:`HookPoint` carries its ``kind`` (``"kv"``, ``"attention"``, ``"logits"``, ...), and every name
is defined here only: the pipeline calls a point by name and an unknown name is an error. Hooks attached with
``with model.hooks(...)`` belong to the model until the block ends; hooks passed to one call
(``generate(hooks=...)``) belong to that call only (:class:`Hooks`), so a half-consumed ``stream()`` keeps
nothing attached to the model. ``steps=`` selects the decoding steps a hook runs at, editing hooks included
(once-per-run points always run)::

    with model.hooks([("guidance.hook_logits", ban_token)], steps=slice(0, 50)):   # the first 50 steps only
        gen = model.generate("lofi piano")
"""

from __future__ import annotations

import difflib
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

# what a hook point holds
TEXT, TOKENS, KV, CROSS_KV, ATTENTION, RESID, LOGITS, CODES, AUDIO, LATENT = (
    "text", "tokens", "kv", "cross_kv", "attention", "resid", "logits", "codes", "audio", "latent")


@dataclass(frozen=True)
class HookPoint:
    """A named place in the pipeline: its shape convention, how often it fires, whether edits apply, and
    what it holds (``kind``)."""

    shape: str
    when: str            # "once" or "each step"
    kind: str
    editable: bool = True


@dataclass(frozen=True)
class Hook:
    """What a hook function is told about the call it is in."""

    name: str
    step: int | None = None      # decoding step (counted across windows), None for once-per-run points
    layer: int | None = None     # decoder layer, None elsewhere
    window: int | None = None    # long-form window the step belongs to (0 for runs of one window)
    kind: str = ""               # the point's kind (see HookPoint)


def layer_point(layer: int, what: str) -> str:
    """The name of a per-layer point: ``layer_point(3, "key") == "decoder.layers.3.hook_key"``."""
    return f"decoder.layers.{layer}.hook_{what}"


LAYER_POINTS = {   # what -> (shape, when, kind, editable)
    "resid_pre": ("[H*batch, 1, d]", "each step", RESID, True),
    "attn_out": ("[H*batch, 1, d]", "each step", RESID, True),
    "cross_attn_out": ("[H*batch, 1, d]", "each step", RESID, True),
    "mlp_out": ("[H*batch, 1, d]", "each step", RESID, True),
    "resid_post": ("[H*batch, 1, d]", "each step", RESID, True),
    "key": ("[H*batch, heads, pos, head_dim]", "each step", KV, True),
    "value": ("[H*batch, heads, pos, head_dim]", "each step", KV, True),
    "cross_key": ("[H*batch, heads, text_len, head_dim]", "once", CROSS_KV, True),
    "cross_value": ("[H*batch, heads, text_len, head_dim]", "once", CROSS_KV, True),
    "self_attn": ("[H*batch, heads, 1, pos]", "each step", ATTENTION, False),
    "cross_attn": ("[H*batch, heads, 1, text_len]", "each step", ATTENTION, False),
}


def hook_points(num_layers: int) -> dict[str, HookPoint]:
    """Every hook point of a model with ``num_layers`` decoder layers, in pipeline order."""
    step = "each step"
    points = {
        "text_encoder.hook_hidden": HookPoint("[batch, text_len, d]", "once", TEXT),
        "text_encoder.hook_mask": HookPoint("[batch, text_len]", "once", TEXT),
        "decoder.hook_input_ids": HookPoint("[batch, K]", step, TOKENS),
    }
    for i in range(num_layers):
        for what, (shape, when, kind, editable) in LAYER_POINTS.items():
            points[layer_point(i, what)] = HookPoint(shape, when, kind, editable)
    points.update({
        "decoder.hook_resid_final": HookPoint("[H*batch, 1, d]", step, RESID),
        "guidance.hook_cond_logits": HookPoint("[batch, K, vocab]", step, LOGITS),
        "guidance.hook_uncond_logits": HookPoint("[batch, K, vocab]", step, LOGITS),
        "guidance.hook_logits": HookPoint("[batch, K, vocab]", step, LOGITS),
        "sampler.hook_logits": HookPoint("[batch, K, vocab]", step, LOGITS),
        "sampler.hook_tokens": HookPoint("[batch, K]", step, TOKENS),
        "delay.hook_tokens": HookPoint("[batch, K]", step, TOKENS),
        "codec.hook_codes": HookPoint("[batch, K, frames]", "once", CODES),
        "codec.hook_latent": HookPoint("[batch, D, frames]", "once", LATENT),
        "codec.hook_audio": HookPoint("[batch, channels, samples]", "once", AUDIO),
    })
    return points


def masked_hook_points(num_layers: int) -> dict[str, HookPoint]:
    """The hook points of a masked (MAGNeT) model, in pipeline order (:mod:`mglab.decoding.masked`): each
    iteration of each stage fires the ``masked.*`` points, ``hook.step`` counting iterations over all stages
    and ``hook.layer`` the stage (the codebook being decoded); the residual stream's points of the LM's layers
    (``decoder.layers.{i}.hook_resid_pre`` ..., as for MusicGen, ``[2*batch, frames, d]``: every frame at once,
    conditional rows then null ones) fire at each iteration with ``hook.layer`` the layer."""
    it = "each iteration"
    resid = {layer_point(i, what): HookPoint("[H*batch, frames, d]", it, RESID)
             for i in range(num_layers) for what in ("resid_pre", "attn_out", "cross_attn_out", "mlp_out",
                                                     "resid_post")}
    return {
        "text_encoder.hook_hidden": HookPoint("[batch, text_len, d]", "once", TEXT),
        "text_encoder.hook_mask": HookPoint("[batch, text_len]", "once", TEXT),
        **resid, "decoder.hook_resid_final": HookPoint("[H*batch, frames, d]", it, RESID),
        "masked.hook_mask": HookPoint("[batch, K, frames] bool, True = masked as the model sees it", it, TOKENS,
                                      editable=False),
        "masked.hook_logits": HookPoint("[batch, K, frames, vocab] guided, before temperature", it, LOGITS),
        "masked.hook_scores": HookPoint("[batch, spans] (frames with span_arrangement='stride1') the highest are "
                                        "masked again (-1e4: kept)", it, LOGITS),
        "masked.hook_tokens": HookPoint("[batch, K, frames] the codes after the iteration", it, TOKENS),
        "codec.hook_codes": HookPoint("[batch, K, frames]", "once", CODES),
        "codec.hook_latent": HookPoint("[batch, D, frames]", "once", LATENT),
        "codec.hook_audio": HookPoint("[batch, channels, samples]", "once", AUDIO),
    }


def match(names_filter, names, arg: str = "names_filter") -> list[str]:
    """The hook names a filter selects: a name, a list of names, a predicate, or None (all).

    Unknown names raise a ``KeyError`` that suggests the closest valid ones; a filter of another type a
    ``TypeError``. Both name ``arg``, the caller's argument.
    """
    names = list(names)
    if names_filter is None:
        return names
    if callable(names_filter):
        return [n for n in names if names_filter(n)]
    if not isinstance(names_filter, (str, list, tuple)):
        raise TypeError(f"{arg}={names_filter!r} is not allowed: give a hook name, a list of them, a predicate "
                        "or None")
    wanted = [names_filter] if isinstance(names_filter, str) else list(names_filter)
    known = set(names)
    for name in wanted:
        if not isinstance(name, str) or name not in known:
            close = difflib.get_close_matches(str(name), names, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else "; see model.hook_names()"
            raise KeyError(f"{arg}: unknown hook name {name!r}{hint}")
    return wanted


def check_steps(steps, name: str = "steps"):
    """``steps`` if it selects decoding steps (None, a slice with non-negative bounds, or indices), else an
    error naming it."""
    bad_slice = isinstance(steps, slice) and any(
        v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0)
        for v in (steps.start, steps.stop, steps.step))
    ok_list = isinstance(steps, (list, tuple, range)) and all(
        isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 0 for s in steps)
    if bad_slice or not (steps is None or isinstance(steps, slice) or ok_list):
        raise TypeError(f"{name}={steps!r} is not allowed: {name} must be None, a slice with non-negative "
                        "integer bounds, or a list of step indices >= 0")
    return steps


def selected(step: int | None, steps) -> bool:
    """Does a hook with step selection ``steps`` run at ``step``? Once-per-run points (step None) always do."""
    if step is None or steps is None:
        return True
    if isinstance(steps, slice):
        start, stride = steps.start or 0, steps.step or 1
        return step >= start and (steps.stop is None or step < steps.stop) and (step - start) % stride == 0
    return step in steps


def _entries(points, hooks, steps, steps_name: str = "steps") -> list[tuple[str, object, object]]:
    """``[(name_or_filter, fn), ...]`` -> ``[(name, fn, steps), ...]``, checked (``steps_name``: what the caller
    calls ``steps``, for its errors)."""
    check_steps(steps, steps_name)
    if hooks is not None and not isinstance(hooks, (list, tuple)):
        raise TypeError(f"hooks={hooks!r} is not allowed: hooks must be a list of (name_or_filter, fn)")
    entries = []
    for item in hooks or []:
        if not (isinstance(item, tuple) and len(item) == 2 and callable(item[1])):
            raise TypeError(f"hooks: each entry must be (name_or_filter, fn), got {item!r}")
        names_filter, fn = item
        entries += [(name, fn, steps) for name in match(names_filter, points, "hooks")]
    return entries


class HookRegistry:
    """The hooks attached to one model with ``with model.hooks(...)``: ``name -> [(fn, steps), ...]``."""

    def __init__(self, points: dict[str, HookPoint]):
        self.points = points
        self.table: dict[str, list] = {}

    def __bool__(self) -> bool:
        return bool(self.table)

    @contextmanager
    def scope(self, hooks, steps=None):
        """Attach hooks for the ``with`` block; they are removed on exit, also when the block raises."""
        entries = _entries(self.points, hooks, steps)
        for name, fn, sel in entries:
            self.table.setdefault(name, []).append((fn, sel))
        try:
            yield self
        finally:
            for name, fn, sel in entries:
                fns = self.table.get(name, [])
                if (fn, sel) in fns:
                    fns.remove((fn, sel))
                if not fns:
                    self.table.pop(name, None)

    def call(self, hooks=None, steps=None, steps_name: str = "steps") -> "Hooks":
        """The hooks of one call: those attached to the model now, plus ``hooks`` for this call only."""
        table = {name: list(fns) for name, fns in self.table.items()}
        for name, fn, sel in _entries(self.points, hooks, steps, steps_name):
            table.setdefault(name, []).append((fn, sel))
        return Hooks(self.points, table)


class Hooks:
    """One call's hooks, called by the pipeline at each hook point: ``hooks(name, value, step, layer)``.

    Its state (``window``) is the call's own, so two calls cannot interfere."""

    def __init__(self, points: dict[str, HookPoint], table: dict[str, list] | None = None):
        self.points, self.table = points, table or {}
        self.window: int | None = None     # set by the long-form loop while it decodes a window

    def __bool__(self) -> bool:
        return bool(self.table)

    def wants(self, name: str) -> bool:
        """Whether a hook is attached to the point ``name``."""
        return name in self.table

    def wants_kind(self, kind: str) -> bool:
        """Whether a hook is attached to a point of this ``kind``."""
        return any(self.points[n].kind == kind for n in self.table)

    def __call__(self, name: str, value, step: int | None = None, layer: int | None = None):
        """Run the hooks of ``name`` on ``value``; return the (possibly replaced) value."""
        point = self.points[name]                 # a name not defined in hook_points is a KeyError
        fns = self.table.get(name)
        if not fns:
            return value
        hook = Hook(name, step, layer, self.window, point.kind)
        for fn, steps in fns:
            if not selected(step, steps):
                continue
            try:
                out = fn(value, hook)
            except Exception as err:
                where = f" at step {step}" if step is not None else ""
                raise RuntimeError(f"hook {getattr(fn, '__name__', fn)!r} on {name!r}{where} raised "
                                   f"{type(err).__name__}: {err}") from err
            if out is not None:
                value = _checked(name, value, out, point, step)
        return value


def run_layer_hooks(hooks: Hooks, step: int, cache, attn: dict | None, num_layers: int, first: bool) -> None:
    """The decoder's per-layer points after one step; edits land in the cache the next step reads.

    ``first``: the step is a window's first, which computes the cross-attention cache afresh (every long-form
    window does, as audiocraft's extend calls the LM per chunk): its hooks run then, in every window.

    Cache points get live views of ``cache`` (a :class:`mglab.networks.kvcache.KVCache`, filled positions only); a
    returned value is written into it. Attention points (``attn``: per-layer probabilities) are read-only.
    """
    for i in range(num_layers):
        points = [("key", cache.keys, step), ("value", cache.values, step)]
        if first:           # the cross-attention cache is made once a window
            points += [("cross_key", lambda j: cache.cross_key[j], None),
                       ("cross_value", lambda j: cache.cross_value[j], None)]
        for what, get, when in points:
            name = layer_point(i, what)
            if hooks.wants(name):
                view = get(i)
                out = hooks(name, view, when, i)
                if out is not view:
                    view[...] = out
        if attn is not None:
            hooks(layer_point(i, "self_attn"), attn["self"][i], step, i)
            hooks(layer_point(i, "cross_attn"), attn["cross"][i], step, i)


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
