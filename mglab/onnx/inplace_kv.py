"""The decoder's self-attention KV cache as a fixed buffer updated in place.

The exported with-past decoder grows its cache by concatenation: every step reads the whole past
``[H*B, heads, pos, head_dim]`` of every layer, writes it again one position longer, and hands the copy back
to the host. At 1500 steps of musicgen-small that is ~1 GB of copying per step, several times the weights.

This rewrite replaces each layer's ``Concat -> attention`` with ONNX Runtime's ``GroupQueryAttention``
(``kv_num_heads == num_heads``, so plain multi-head attention), whose past and present outputs may be one
buffer. The host preallocates ``[H*B, heads, capacity, head_dim]`` per layer and binds it as both; each step
writes one column and attends over the ``seqlens_k + 1`` valid ones::

    position    0   1   2   3   4   5   6   7      capacity = 8
    step 3:   [ k0  k1  k2  k3  .   .   .   . ]    GQA writes k3, attends over 0..3 (seqlens_k = 3)
    step 4:   [ k0  k1  k2  k3  k4  .   .   . ]    total_sequence_length = 5

Two inputs are added: ``seqlens_k`` int32 ``[H*B]`` (positions before this step) and
``total_sequence_length`` int32 ``[1]``. Wherever the graph read the past length from the cache's shape (the
positional embedding), it reads ``total_sequence_length - new tokens`` instead.

The matcher is strict: a graph whose attention does not have the expected shape (another exporter, another
attention implementation) is left as it is, with :class:`~.Unmatched` saying why, and the decoder runs the
concatenating graph. For a merged decoder, the ``If``'s cached branch is taken out as a graph of its own.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from . import fuse
from . import graphfile as graphs
from . import residual_graph as residual
from .graphfile import Unmatched

TAG = "inplace-v12"
PASS = ("Identity", "Cast")         # nodes walked through when following a tensor


def with_inplace_cache(src: Path, num_layers: int, num_heads: int, resid: bool = False) -> Path:
    """Path of ``src`` (a with-past or merged decoder) rewritten for an in-place cache, built once; with
    ``resid``, with the residual stream's points too (:mod:`mglab.onnx.residual_graph`). A graph that does not match
    raises :class:`~.Unmatched`, remembered next to where the rewrite would be."""
    tag = f"{TAG}-{num_layers}x{num_heads}" + (f"-{residual.TAG}" if resid else "")
    marker = graphs.cached_path(src, tag).with_suffix(".unmatched")
    if marker.is_file():
        raise Unmatched(marker.read_text())
    try:
        return graphs.cached(src, tag, lambda s, d: _build(s, d, num_layers, num_heads, resid))
    except Unmatched as err:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(str(err))
        raise


def _build(src: Path, dst: Path, num_layers: int, num_heads: int, resid: bool = False) -> None:
    import onnx

    model = graphs.load(src)
    if any(n.op_type == "If" for n in model.graph.node):
        model = cached_branch(model)
    if resid:
        residual.rewrite(model.graph, num_layers)
    rewrite(model.graph, num_layers, num_heads)
    if not resid:                        # the residual graph's points stay plain Adds (hooks read and edit them)
        fuse.skip_layer_norm(model.graph)
    fuse.single_input_concats(model.graph)                           # copies only: the values stay the same
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    graphs.save(model, dst)


def cached_branch(model):
    """The merged decoder's ``use_cache_branch=True`` branch as a model of its own (logits and the
    self-attention cache; the outer initializers, inputs and top-level nodes it reads come along: Xenova's
    q8 quantizes ``encoder_hidden_states`` outside the ``If``)."""
    return graphs.branch_model(model, "then_branch")


def rewrite(g, num_layers: int, num_heads: int) -> None:
    """Rewrite graph ``g`` in place: each layer's self-attention becomes one ``GroupQueryAttention``."""
    from onnx import TensorProto, helper

    ix = _Index(g)
    layers = [_match_layer(ix, i) for i in range(num_layers)]          # all match, or nothing changes
    retype = {name: t for m in layers for name, t in m["retype"].items()}
    for value in [*g.input, *g.output]:     # fp16 inside, float32 outside: the cache keeps the inside type
        if value.name in retype:
            value.type.tensor_type.elem_type = retype[value.name]
    shapes = _past_shape_readers(ix, num_layers, {n.output[0] for m in layers for n in m["concats"]})
    g.input.extend([helper.make_tensor_value_info("seqlens_k", TensorProto.INT32, ["rows"]),
                    helper.make_tensor_value_info("total_sequence_length", TensorProto.INT32, [1])])
    instead = {}                # id(node) -> the nodes that take its place (keeps the graph sorted)
    for i, m in enumerate(layers):
        gqa = helper.make_node(
            "GroupQueryAttention",
            [m["q"], m["k"], m["v"], f"past_key_values.{i}.decoder.key", f"past_key_values.{i}.decoder.value",
             "seqlens_k", "total_sequence_length"],
            [m["y"], f"present.{i}.decoder.key", f"present.{i}.decoder.value"],
            name=f"/inplace/layers.{i}/GroupQueryAttention", domain="com.microsoft",
            num_heads=num_heads, kv_num_heads=num_heads, scale=m["scale"])
        instead.update({id(n): [] for n in m["concats"] + m["casts"]})
        instead[id(m["reshape"])] = [gqa]
    first = _replace_shapes(g, shapes, instead)
    nodes = first + [x for n in g.node for x in instead.get(id(n), [n])]
    del g.node[:]
    g.node.extend(nodes)
    graphs.prune(g)


# matching --------------------------------------------------------------------------------------------------
class _Index:
    """Producer and consumers of every tensor of a graph, and its constants."""

    def __init__(self, g):
        from onnx import numpy_helper

        self.producer = {o: n for n in g.node for o in n.output}
        self.consumers = defaultdict(list)
        for n in g.node:
            for name in n.input:
                self.consumers[name].append(n)
        self.consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        for n in g.node:
            if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
                self.consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)

    def node(self, tensor: str, *ops: str, skip=PASS):
        """The producer of ``tensor`` (walking back through ``skip`` nodes); it must be one of ``ops``."""
        n = self.producer.get(tensor)
        while n is not None and n.op_type in skip and n.op_type not in ops:
            n = self.producer.get(n.input[0])
        if n is None or n.op_type not in ops:
            found = n.op_type if n is not None else "a graph input"
            raise Unmatched(f"{tensor!r} comes from {found}, expected {'/'.join(ops)}")
        return n

    def scalar(self, name: str) -> float | None:
        v = self.consts.get(name)
        return float(v.reshape(-1)[0]) if v is not None and v.size == 1 else None

    def source(self, tensor: str) -> str:
        """``tensor`` followed back through nodes that pass it on unchanged."""
        n = self.producer.get(tensor)
        while n is not None and _passes(n):
            tensor, n = n.input[0], self.producer.get(n.input[0])
        return tensor


def _passes(node) -> bool:
    """Identity, or a one-input Concat (optimum's exports read the past length through one)."""
    return node.op_type == "Identity" or (node.op_type == "Concat" and len(node.input) == 1)


def _attr(node, name, default=None):
    from onnx import helper

    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def _from_heads(ix: _Index, tensor: str) -> str:
    """``tensor [B, heads, S, hd]`` made by ``Transpose(Reshape(x [B, S, heads*hd]))``: returns ``x``."""
    t = ix.node(tensor, "Transpose")
    if list(_attr(t, "perm", [])) != [0, 2, 1, 3]:
        raise Unmatched(f"{t.name}: perm {_attr(t, 'perm')} is not [0, 2, 1, 3]")
    return ix.node(t.input[0], "Reshape").input[0]


def _scaled(ix: _Index, tensor: str, *stop: str) -> tuple[str, float]:
    """Walk back from ``tensor`` through Mul/Div by scalar constants (and Casts) to a ``stop`` op."""
    scale = 1.0
    while True:
        n = ix.node(tensor, "Mul", "Div", *stop)
        if n.op_type in stop:
            return tensor, scale
        at = 1 if ix.scalar(n.input[1]) is not None else 0
        c = ix.scalar(n.input[at])
        if c is None or (n.op_type == "Div" and at == 0):
            raise Unmatched(f"{n.name}: {n.op_type} by a non-constant")
        scale = scale * c if n.op_type == "Mul" else scale / c
        tensor = n.input[1 - at]


def _match_layer(ix: _Index, i: int) -> dict:
    """Find layer ``i``'s ``q, k, v`` projections, its past inputs, its output and its softmax scale. A graph
    that computes in fp16 behind float32 inputs and outputs casts the past before its Concat (and may cast the
    present after it): those casts go, and ``retype`` gives the past (and present) the inside type, so the
    one buffer that is both holds what attention reads."""
    concat, casts, retype = {}, [], {}
    for kind in ("key", "value"):
        past, present = f"past_key_values.{i}.decoder.{kind}", f"present.{i}.decoder.{kind}"
        out = ix.producer.get(present)
        cast_out = out is not None and out.op_type == "Cast"                # fp16 inside, float32 outside
        casts += [out] if cast_out else []
        node = concat[kind] = ix.node(out.input[0] if cast_out else present, "Concat", skip=())
        if len(node.input) != 2 or _attr(node, "axis") not in (2, -2):
            raise Unmatched(f"{node.name}: not a two-input Concat on the sequence axis")
        cast = ix.producer.get(ix.source(node.input[0]))
        if cast is not None and cast.op_type == "Cast" and ix.source(cast.input[0]) == past:
            retype[past] = _attr(cast, "to")
            if cast_out:
                retype[present] = retype[past]
        elif ix.source(node.input[0]) != past:
            raise Unmatched(f"{node.name}: first input is not {past}")
        elif cast_out:
            raise Unmatched(f"{out.name}: the present is cast but the past is not")
    names = {kind: node.output[0] for kind, node in concat.items()}       # the present, inside the graph
    k = _from_heads(ix, concat["key"].input[1])
    v = _from_heads(ix, concat["value"].input[1])
    pv = [n for n in ix.consumers[names["value"]] if n.op_type == "MatMul" and n.input[1] == names["value"]]
    others = [n for n in ix.consumers[names["value"]] if all(n is not c for c in casts)]   # besides its cast
    if len(pv) != 1 or len(others) != 1:
        raise Unmatched(f"{names['value']}: expected exactly one consumer, the probabilities @ V MatMul")
    softmax = ix.node(pv[0].input[0], "Softmax")
    if _attr(softmax, "axis", -1) not in (-1, 3):
        raise Unmatched(f"{softmax.name}: softmax not over the last axis")
    scores, scale = _scaled(ix, softmax.input[0], "MatMul")
    qk = ix.node(scores, "MatMul")
    q_heads, q_scale = _scaled(ix, qk.input[0], "Transpose")
    q = _from_heads(ix, q_heads)
    k_side, k_scale = _scaled(ix, qk.input[1], "Transpose")
    kt = ix.node(k_side, "Transpose")
    if list(_attr(kt, "perm", [])) != [0, 1, 3, 2] or ix.source(kt.input[0]) != names["key"]:
        raise Unmatched(f"{kt.name}: not the transposed present key")
    out = ix.consumers[pv[0].output[0]]
    if len(out) != 1 or out[0].op_type != "Transpose" or list(_attr(out[0], "perm", [])) != [0, 2, 1, 3]:
        raise Unmatched(f"{pv[0].name}: output not transposed back to [B, S, heads, hd]")
    reshape = ix.consumers[out[0].output[0]]
    if len(reshape) != 1 or reshape[0].op_type != "Reshape":
        raise Unmatched(f"{out[0].name}: not followed by the Reshape to [B, S, hidden]")
    return {"q": q, "k": k, "v": v, "y": reshape[0].output[0], "scale": scale * q_scale * k_scale,
            "concats": list(concat.values()), "casts": casts, "retype": retype, "reshape": reshape[0]}


def _past_shape_readers(ix: _Index, num_layers: int, concats: set) -> list:
    """The Shape nodes that read a past self-attention input (the positional embedding's past length).
    Any other reader, besides the cache's own Concat, is unknown and stops the rewrite."""
    readers = []
    for i in range(num_layers):
        for kind in ("key", "value"):
            todo = [f"past_key_values.{i}.decoder.{kind}"]
            while todo:
                for n in ix.consumers[todo.pop()]:
                    if _passes(n) or n.op_type == "Cast":          # fp16 inside: the same shape
                        todo.append(n.output[0])
                    elif n.op_type == "Shape" and _attr(n, "start") is None and _attr(n, "end") is None:
                        readers.append(n)
                    elif not (n.op_type == "Concat" and n.output[0] in concats):
                        raise Unmatched(f"{n.name} ({n.op_type}) reads the past {kind} of layer {i}")
    return readers


def _replace_shapes(g, readers: list, instead: dict) -> list:
    """Each ``Shape(past)`` becomes ``shape with [2] = total_sequence_length - new tokens``; returns the
    nodes computing that length, to go first."""
    from onnx import TensorProto, helper, numpy_helper

    if not readers:
        return []
    p = "/inplace/past_length/"
    for name, v in {"one": 1, "zero": 0, "two": 2, "three": 3, "four": 4}.items():
        g.initializer.append(numpy_helper.from_array(np.array([v], dtype=np.int64), p + name))
    for j, n in enumerate(readers):
        s = f"{p}{j}/"
        instead[id(n)] = [
            helper.make_node("Shape", [n.input[0]], [s + "shape"]),                           # [4]
            helper.make_node("Slice", [s + "shape", p + "zero", p + "two"], [s + "head"]),   # [2]
            helper.make_node("Slice", [s + "shape", p + "three", p + "four"], [s + "tail"]),  # [1]
            helper.make_node("Concat", [s + "head", p + "length", s + "tail"], [n.output[0]], axis=0)]
    return [helper.make_node("Shape", ["input_ids"], [p + "ids_shape"]),                      # [rows, S]
            helper.make_node("Gather", [p + "ids_shape", p + "one"], [p + "new"], axis=0),   # [1]
            helper.make_node("Cast", ["total_sequence_length"], [p + "total"], to=TensorProto.INT64),
            helper.make_node("Sub", [p + "total", p + "new"], [p + "length"])]                # [1]
