"""The decoder's residual stream: hook points inside each layer, readable and editable, on the ONNX graphs.

One decoder layer of MusicGen (pre-norm), and where its points sit (``d`` = hidden size)::

    resid_pre ──┬── self_attn_layer_norm ── self-attention ── attn_out ──(+)── resid_mid
                └───────────────────────────────────────────────────────┘
    resid_mid ──┬── encoder_attn_layer_norm ── cross-attention ── cross_attn_out ──(+)── resid_mid2
                └───────────────────────────────────────────────────────────────────┘
    resid_mid2 ─┬── final_layer_norm ── fc1 ── gelu ── fc2 ── mlp_out ──(+)── resid_post  (= next resid_pre)
                └──────────────────────────────────────────────────────┘
    last resid_post ── layer_norm ── resid_final ── K heads ── logits

Hook names (each ``[H*B, 1, d]`` per step, editable; H = 2 with guidance)::

    decoder.layers.{i}.hook_resid_pre       layer i's input (layer 0: codebook embeddings summed + positions)
    decoder.layers.{i}.hook_attn_out        self-attention's output, before its residual add
    decoder.layers.{i}.hook_cross_attn_out  cross-attention's output, before its residual add
    decoder.layers.{i}.hook_mlp_out         the MLP's output, before its residual add
    decoder.layers.{i}.hook_resid_post      layer i's output (the tensor layer i + 1 reads)
    decoder.hook_resid_final                after the final layer norm: what the K heads read

How: :func:`rewrite` finds the points by the graph's structure (its ``3 L + 1`` LayerNormalizations and the
residual ``Add`` that follows each block), makes each an output ``resid.*`` and puts a
``Where(edit.*.on, edit.*, value)`` between it and its readers. A step runs once with every ``.on`` false and
the hooks read the values; when a hook returns a new value, the step runs again with that point replaced,
and the points after it show the edit's effect (:func:`~.run_step`). So an edit changes everything downstream
at that step (later layers, the logits, the keys and values cached for later steps), as a PyTorch forward
hook on the same module does. Only runs that hook these points use the rewritten graphs.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from ..core.hooks import layer_point
from . import graphfile as graphs
from .graphfile import Unmatched

TAG = "resid-v1"
BLOCKS = ("attn_out", "cross_attn_out", "mlp_out")


@functools.cache
def point_hooks(num_layers: int) -> dict[str, tuple[tuple[str, int | None], ...]]:
    """``{graph output: ((hook name, layer), ...)}`` in the order a step meets them; ``resid_pre`` of layer
    ``i > 0`` and ``resid_post`` of layer ``i - 1`` read the same tensor, so one output has both hooks."""
    out = {"resid.0.pre": ((layer_point(0, "resid_pre"), 0),)}
    for i in range(num_layers):
        out.update({f"resid.{i}.{b}": ((layer_point(i, b), i),) for b in BLOCKS})
        after = ((layer_point(i, "resid_post"), i),)
        out[f"resid.{i}.post"] = after + (((layer_point(i + 1, "resid_pre"), i + 1),) if i + 1 < num_layers else ())
    out["resid.final"] = (("decoder.hook_resid_final", None),)
    return out


def graph_points(num_layers: int) -> list[str]:
    """The graph outputs, in order."""
    return list(point_hooks(num_layers))


# the graph rewrite ------------------------------------------------------------------------------------------
def locate(g, num_layers: int) -> dict[str, str]:
    """``{graph point: tensor name}`` in a flat decoder graph ``g``."""
    norms = [n for n in g.node if n.op_type == "LayerNormalization"]
    if len(norms) != 3 * num_layers + 1:
        raise Unmatched(f"{len(norms)} LayerNormalization nodes, expected 3 per layer and a final one "
                        f"({3 * num_layers + 1} for {num_layers} layers)")
    producer = {o: n for n in g.node for o in n.output}
    found = {"resid.0.pre": norms[0].input[0], "resid.final": norms[-1].output[0]}
    for i in range(num_layers):
        before = norms[3 * i].input[0]                      # the residual entering each block
        for j, block in enumerate(BLOCKS):
            after = norms[3 * i + j + 1].input[0]
            add = producer.get(after)
            if add is None or add.op_type != "Add" or before not in add.input:
                raise Unmatched(f"layer {i}: the {block} residual Add is not where a pre-norm layer has it")
            found[f"resid.{i}.{block}"] = add.input[1] if add.input[0] == before else add.input[0]
            before = after
        found[f"resid.{i}.post"] = before
    return found


def rewrite(g, num_layers: int) -> None:
    """Expose and make replaceable every point of flat graph ``g`` (in place): outputs ``resid.*``, inputs
    ``edit.*`` (the replacement) and ``edit.*.on`` (bool ``[1]``: use it)."""
    from onnx import TensorProto, helper

    found = locate(g, num_layers)
    norm = next(n for n in g.node if n.op_type == "LayerNormalization")
    scale = next((t for t in g.initializer if t.name == norm.input[1]), None)
    dtype = scale.data_type if scale is not None else TensorProto.FLOAT         # what the layers compute in
    d = scale.dims[0] if scale is not None else None
    renamed = {tensor: f"{point}/edited" for point, tensor in found.items()}
    for n in g.node:                                                            # readers read the edited value
        for j, name in enumerate(n.input):
            if name in renamed:
                n.input[j] = renamed[name]
    for o in g.output:
        if o.name in renamed:
            raise Unmatched(f"{o.name} is a graph output and a residual point")
    extra = []
    for point, tensor in found.items():
        extra += [helper.make_node("Where", [f"edit.{point}.on", f"edit.{point}", tensor], [renamed[tensor]],
                                   name=f"/resid/{point}/Where"),
                  helper.make_node("Identity", [tensor], [point], name=f"/resid/{point}/Identity")]
        g.input.extend([helper.make_tensor_value_info(f"edit.{point}.on", TensorProto.BOOL, [1]),
                        helper.make_tensor_value_info(f"edit.{point}", dtype, ["rows", "q", d])])
        g.output.append(helper.make_tensor_value_info(point, dtype, ["rows", "q", d]))
    nodes = _sorted(list(g.node) + extra)
    del g.node[:]
    g.node.extend(nodes)


def _sorted(nodes: list) -> list:
    """Nodes in a topological order (each after the producers of its inputs), stable otherwise."""
    made = {o for n in nodes for o in n.output}
    ready, out, waiting = set(), [], list(nodes)
    while waiting:
        rest = []
        for n in waiting:
            if all(i == "" or i not in made or i in ready for i in n.input):
                out.append(n)
                ready.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(waiting):
            raise Unmatched("the rewritten graph has a cycle")
        waiting = rest
    return out


def with_residual(src: Path, num_layers: int, branch: str | None = None) -> Path:
    """Path of ``src`` with the residual points (built once, cached); ``branch`` (``then_branch``: the
    cached step, ``else_branch``: the first) takes a merged decoder's branch out as a flat graph first."""
    return graphs.cached(src, f"{TAG}-{num_layers}-{branch or 'flat'}",
                         lambda s, d: _build(s, d, num_layers, branch))


def _build(src: Path, dst: Path, num_layers: int, branch: str | None) -> None:
    model = graphs.load(src)
    if branch is not None:
        model = graphs.branch_model(model, branch)
    rewrite(model.graph, num_layers)
    graphs.save(model, dst)


# the graph's inputs ---------------------------------------------------------------------------------------------
def edit_feeds(num_layers: int, rows: int, d: int, dtype) -> dict[str, np.ndarray]:
    """Every ``edit.*`` input switched off: ``.on`` false, a zero value ``[rows, 1, d]``."""
    feeds = {}
    for point in graph_points(num_layers):
        feeds[f"edit.{point}.on"] = np.zeros(1, dtype=bool)
        feeds[f"edit.{point}"] = np.zeros((rows, 1, d), dtype=dtype)
    return feeds
