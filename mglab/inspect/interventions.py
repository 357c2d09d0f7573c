"""Interventions on the residual stream: steering vectors, activation patching, the logit lens.

All of them are hooks on the points of :mod:`mglab.onnx.residual_graph` (``decoder.layers.{i}.hook_resid_post`` and
friends), scoped by context managers so that nothing stays attached after the block::

    vec = steering_vector(model, ["a fast piano melody"], ["a slow piano melody"], layer=2, duration=2.0)
    with steer(model, vec, layer=2, scale=4.0):          # or: with model.steer(vec, 2, 4.0):
        gen = model.generate("a piano melody", duration=4.0)

    patched = patch(model, "a high flute melody", "a low flute melody", ["decoder.layers.1.hook_resid_post"])
    table = patching_map(model, source, target, metric, layers=[0, 1, 2, 3], steps=[slice(0, 25), ...])

    gen, cache = model.run_with_cache(prompt, names_filter=lambda n: "resid" in n or n == "decoder.hook_input_ids")
    lens = logit_lens(model, cache, layer=1)              # [steps, B, K, vocab]

Rows: with guidance a step's residual is ``[H*B, 1, d]``, the B conditional rows first, then the B rows of
the null condition (H = 2). "cond" edits and means use the conditional rows only.
"""

from __future__ import annotations

import functools
import math
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..core.hooks import KV, LAYER_POINTS, RESID, check_steps, layer_point, match
from ..core.settings import check_number, check_prompts, resolve

ROWS = ("cond", "both")
POINTS = tuple(w for w, (_, _, kind, _) in LAYER_POINTS.items() if kind == RESID)


def check_layer(model, layer, name: str = "layer") -> int:
    """``layer`` as an int, or a ValueError naming the model's layer range."""
    n = model.config.num_layers
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not 0 <= layer < n:
        raise ValueError(f"{name}={layer!r} is not allowed: {name} must be an integer in [0, {n - 1}] "
                         f"(the model has {n} decoder layers)")
    return int(layer)


def check_vector(model, vector) -> np.ndarray:
    """``vector`` as float32 ``[hidden_size]``, or an error saying what it must be."""
    d = model.config.hidden_size
    try:
        v = np.asarray(vector, dtype=np.float32)
    except (TypeError, ValueError):
        raise TypeError(f"vector of type {type(vector).__name__} is not allowed: vector must be an array "
                        f"[hidden_size] = ({d},)") from None
    if v.shape != (d,):
        raise ValueError(f"vector has shape {v.shape}; it must be [hidden_size] = ({d},)")
    if not np.isfinite(v).all():
        raise ValueError("vector holds NaN or infinite values: vector must be finite")
    return v


def check_point(point) -> str:
    """``point`` if it is one of :data:`POINTS`, else a ValueError."""
    if point not in POINTS:
        raise ValueError(f"point={point!r} is not allowed: point must be one of {POINTS}")
    return point


# steering ----------------------------------------------------------------------------------------------------
def mean_residual(model, prompts, layer: int, point: str = "resid_post", **generate_kwargs) -> np.ndarray:
    """The mean of ``point`` (default ``resid_post``) of ``layer`` over the conditional rows of every step:
    ``[d]``."""
    layer, point = check_layer(model, layer), check_point(point)
    prompts = check_prompts(prompts)
    name = layer_point(layer, point)
    _, cache = model.run_with_cache(prompts, names_filter=name, **generate_kwargs)
    values = cache[name]                                                   # [steps, H*B, 1, d]
    return values[:, :len(prompts), 0].mean(axis=(0, 1))                   # [d]


def steering_vector(model, positive, negative, layer: int, point: str = "resid_post",
                    **generate_kwargs) -> np.ndarray:
    """Difference of mean residuals (``point`` of ``layer``, conditional rows, over steps) between two prompt
    sets: ``[d]``. ``generate_kwargs`` (duration, seed, ...) apply to both runs.

    ``point`` is one of :data:`~.POINTS`: ``'resid_post'`` (the stream after the layer: what was played and what
    was asked, mixed) or a block's output, e.g. ``'cross_attn_out'`` (what the layer read from the prompt)."""
    layer, point = check_layer(model, layer), check_point(point)
    check_prompts(positive), check_prompts(negative)
    return mean_residual(model, positive, layer, point, **generate_kwargs) - \
        mean_residual(model, negative, layer, point, **generate_kwargs)


def steering_hook(vector: np.ndarray, scale: float, rows: str, batch: dict):
    """``fn(value, hook)`` adding ``scale * vector`` to the residual (``rows='cond'``: the conditional rows,
    the batch size read from ``batch['B']``)."""
    delta = (float(scale) * vector).astype(np.float32)                    # [d]

    def add(x, hook):                                                      # [H*B, 1, d]
        y = x.copy()
        b = batch.get("B", x.shape[0]) if rows == "cond" else x.shape[0]
        y[:b] += delta.astype(x.dtype)
        return y
    return add


@contextmanager
def steer(model, vector, layer: int, scale: float = 1.0, rows: str = "cond", point: str = "resid_post"):
    """``with steer(model, vector, layer, scale):`` adds ``scale * vector`` to ``point`` (default
    ``resid_post``) of ``layer`` at every step of every run in the block (``rows``: ``'cond'``, the
    conditional rows, or ``'both'``). A block output's edit flows into the residual add after it."""
    layer, point = check_layer(model, layer), check_point(point)
    vector = check_vector(model, vector)
    if rows not in ROWS:
        raise ValueError(f"rows={rows!r} is not allowed: rows must be one of {ROWS}")
    check_number("scale", scale, "a finite number", math.isfinite)
    batch = {}

    def count(ids, hook):                                                  # [B, K]: the batch size
        batch["B"] = ids.shape[0]

    add = steering_hook(vector, scale, rows, batch)
    with model.hooks([("decoder.hook_input_ids", count), (layer_point(layer, point), add)]):
        yield


# patching ----------------------------------------------------------------------------------------------------
def _length(model, prompts, kwargs) -> tuple[int, int]:
    s = resolve(model.config, model.defaults, len(prompts), **kwargs)
    return s.max_new_tokens, s.windows


def _checked_patch(model, source, target, names, source_kwargs, generate_kwargs):
    """Prompts and names checked, and the source run's settings: errors before any model runs."""
    source, target = check_prompts(source), check_prompts(target)
    points = model.hook_names()
    names = match(names, points, "names")
    bad = [n for n in names if not points[n].editable or points[n].when != "each step" or points[n].kind == KV]
    if bad:
        raise ValueError(f"names={bad} cannot be patched: patch replays editable per-step points (a key/value "
                         "hook holds the whole cache; patch the residual stream instead)")
    if len(source) != len(target):
        raise ValueError(f"source has {len(source)} prompts and target {len(target)}: a patch needs as many")
    if generate_kwargs.get("seed") is None:         # one random stream for the clean and every patched run
        generate_kwargs = {**generate_kwargs, "seed": int(np.random.default_rng().integers(2**31))}
    src_kwargs = {**generate_kwargs, **(source_kwargs or {})}
    a, b = _length(model, source, src_kwargs), _length(model, target, generate_kwargs)
    if a != b:
        raise ValueError(f"the source run decodes {a[0]} tokens in {a[1]} windows and the target {b[0]} in "
                         f"{b[1]}: a patch needs runs of the same length")
    return source, target, names, src_kwargs, generate_kwargs


def _record(model, source, names, steps, src_kwargs) -> dict:
    """``{name: {step: value}}`` of ``names`` in a run of ``source``."""
    _, cache = model.run_with_cache(source, names_filter=names, steps=steps, **src_kwargs)
    return {n: dict(zip(cache.steps(n), cache[n])) for n in names}


def _replay(model, target, recorded: dict, names, steps, generate_kwargs):
    def replay(x, hook):
        return recorded[hook.name].get(hook.step)

    return model.generate(target, hooks=[(names, replay)], hook_steps=steps, **generate_kwargs)


def patch(model, source, target, names, steps=None, source_kwargs: dict | None = None, **generate_kwargs):
    """Run ``source``, record the hook points ``names``, and replay them into a run of ``target``: the
    patched :class:`~mglab.Generation`. ``steps`` (a slice or indices) limits the patch to those steps;
    ``source_kwargs`` override ``generate_kwargs`` for the source run (its length must be the same). Without a
    ``seed`` one is drawn and shared by both runs (as TransformerLens patches one forward pass): patching a run
    with its own activations changes nothing."""
    check_steps(steps)
    source, target, names, src_kwargs, generate_kwargs = _checked_patch(model, source, target, names, source_kwargs,
                                                                        generate_kwargs)
    return _replay(model, target, _record(model, source, names, steps, src_kwargs), names, steps, generate_kwargs)


def patching_map(model, source, target, metric, layers=None, steps=None, point: str = "resid_post",
                 **generate_kwargs) -> np.ndarray:
    """How much patching ``point`` of each layer, in each step window, moves ``metric`` (a function of a
    :class:`~mglab.Generation` giving a number) from the target run toward the source run:
    ``[len(layers), len(steps)]`` of ``metric(patched) - metric(target)``. The source runs once.

    ``steps``: a list of slices (step windows; default one window, every step). Without a ``seed``, one is
    drawn and shared by the clean run and every patched one."""
    layers = [check_layer(model, i, "layers") for i in (range(model.config.num_layers) if layers is None else layers)]
    windows = [slice(None)] if steps is None else list(steps)
    for w in windows:
        check_steps(w, "steps")
    names = {i: layer_point(i, point) for i in layers}
    source, target, _, src_kwargs, generate_kwargs = _checked_patch(model, source, target, list(names.values()),
                                                                    None, generate_kwargs)
    if model.hook_names()[names[layers[0]]].kind != RESID:
        raise ValueError(f"point={point!r} is not a residual point")
    recorded = _record(model, source, list(names.values()), None, src_kwargs)
    base = metric(model.generate(target, **generate_kwargs))
    out = np.zeros((len(layers), len(windows)))
    for r, i in enumerate(layers):
        for c, w in enumerate(windows):
            out[r, c] = metric(_replay(model, target, recorded, [names[i]], w, generate_kwargs)) - base
    return out


# the logit lens --------------------------------------------------------------------------------------------
def logit_lens(model, cache, layer: int, batch: int | None = None) -> np.ndarray:
    """The residual after ``layer`` (from ``cache``, recorded by ``run_with_cache``) through the final layer
    norm and the K heads, in numpy: ``[steps, B, K, vocab]`` for the conditional rows (the batch size from
    ``batch`` or the cache's ``decoder.hook_input_ids``). At the last layer it gives the model's conditional
    logits."""
    layer = check_layer(model, layer)
    name = layer_point(layer, "resid_post")
    if name not in cache:
        raise KeyError(f"the cache has no {name!r}: run_with_cache with names_filter including it")
    if batch is None:
        if "decoder.hook_input_ids" not in cache:
            raise ValueError("batch=None needs decoder.hook_input_ids in the cache (or give batch=)")
        batch = cache["decoder.hook_input_ids"].shape[1]
    path = next(iter(model.decoder.paths.values()))
    scale, bias, heads, eps = lens_weights(path, model.config.num_codebooks)   # [d], [d], [K, d, V], float
    x = np.asarray(cache[name][:, :batch, 0], dtype=np.float64)           # [steps, B, d]
    mu = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    normed = (x - mu) / np.sqrt(var + eps) * scale + bias                  # [steps, B, d]
    return np.einsum("sbd,kdv->sbkv", normed, heads).astype(np.float32)    # [steps, B, K, V]


@functools.lru_cache(maxsize=4)
def lens_weights(path: Path, num_codebooks: int):
    """The final layer norm's scale and bias ``[d]``, the K heads ``[K, d, V]`` and the norm's epsilon, read
    from the decoder graph's initializers (float graphs only: a quantized model's fp32 sibling file is read instead)."""
    from onnx import numpy_helper

    from ..onnx import graphfile as graph

    candidates = [path] + [path.parent / f for f in ("decoder_model_merged.onnx", "decoder_model.onnx")]
    for p in candidates:
        if not Path(p).is_file():
            continue
        m = graph.load(p)
        g = m.graph
        if any(n.op_type == "If" for n in g.node):
            g = next(a.g for n in g.node if n.op_type == "If" for a in n.attribute if a.name == "else_branch")
        inits = {t.name: t for t in list(m.graph.initializer) + list(g.initializer)}
        for n in list(m.graph.node) + list(g.node):            # merged graphs name shared weights via Identity
            if n.op_type == "Identity" and n.input[0] in inits:
                inits[n.output[0]] = inits[n.input[0]]
        norms = [n for n in g.node if n.op_type == "LayerNormalization"]
        if not norms:
            continue
        final = norms[-1]
        heads = [n for n in g.node if n.op_type == "MatMul" and n.input[0] == final.output[0] and n.input[1] in inits]
        if len(heads) != num_codebooks or final.input[1] not in inits:
            continue
        arr = lambda name: numpy_helper.to_array(inits[name]).astype(np.float64)   # noqa: E731
        bias = arr(final.input[2]) if len(final.input) > 2 else np.zeros(len(arr(final.input[1])))
        eps = next((a.f for a in final.attribute if a.name == "epsilon"), 1e-5)
        return arr(final.input[1]), bias, np.stack([arr(h.input[1]) for h in heads]), eps
    raise ValueError(f"no float decoder graph with the final layer norm and {num_codebooks} heads "
                     f"found in {path.parent} (the logit lens reads float weights: keep the fp32 files)")
