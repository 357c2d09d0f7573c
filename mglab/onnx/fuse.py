"""Operator fusions ONNX Runtime's own graph optimizer leaves undone on the decoder.

A pre-LN transformer adds the residual and normalizes it: ``y = LayerNorm(x + r)``, with ``x + r`` read again
by the next residual add. ONNX Runtime's built-in ``SkipLayerNormFusion`` fuses only an ``Add`` whose sum
nothing else reads, so in these decoders it fuses none. Its ``SkipLayerNormalization`` kernel hands the sum back
as its fourth output, so the pair can be one kernel all the same::

    x ──┐                                 x ──┐
        Add ── s ── LayerNorm ── y   ->       SkipLayerNormalization ── y
    r ──┘    └──── (next Add)             r ──┘                      └── s (output 3) ── (next Add)

The exporter also leaves ``Concat`` nodes of a single input on the with-past path (the cross-attention's cached
keys and values, and the first layer's self-attention cache read for its shape): each copies its input every step
(at batch 8 of the musicgen-small shape, about 6 ms a step of kernel time), and ONNX Runtime runs them.
:func:`single_input_concats` wires their readers to the input itself: the same values, no copy.
"""

from __future__ import annotations

from collections import defaultdict

FLOAT = 1                                   # onnx.TensorProto.FLOAT: fp16 norms stay (the fused kernel rounds
                                            # them differently: 2 of 248 tokens changed on the tiny model)


def skip_layer_norm(g) -> int:
    """Fuse every ``LayerNormalization(Add(a, b))`` over the last axis in graph ``g`` (in place) into
    ``SkipLayerNormalization`` (``com.microsoft``); returns how many were fused. An ``Add`` of a constant
    (an initializer) is left alone, as ONNX Runtime's own fusion leaves it, and so is a norm whose scale or bias
    is computed rather than stored, or stored in another type than float32."""
    from onnx import helper

    producer = {o: n for n in g.node for o in n.output}
    readers = defaultdict(int)
    for n in g.node:
        for name in n.input:
            readers[name] += 1
    outputs = {o.name for o in g.output}
    constants = {t.name: t.data_type for t in g.initializer}
    replaced, gone = {}, set()
    for ln in g.node:
        if ln.op_type != "LayerNormalization" or len(ln.output) != 1 or len(ln.input) not in (2, 3):
            continue
        axis = next((helper.get_attribute_value(a) for a in ln.attribute if a.name == "axis"), -1)
        add = producer.get(ln.input[0])
        if axis != -1 or add is None or add.op_type != "Add" or id(add) in replaced:
            continue
        weights = [_stored(i, producer, constants) for i in ln.input[1:]]     # gamma (and beta)
        if any(i in constants for i in add.input) or None in weights:
            continue
        sum_read = readers[add.output[0]] > 1 or add.output[0] in outputs
        eps = next((helper.get_attribute_value(a) for a in ln.attribute if a.name == "epsilon"), 1e-5)
        fused = helper.make_node(                  # epsilon always set: the two ops' defaults differ (1e-12)
            "SkipLayerNormalization", [add.input[0], add.input[1], *weights],
            [ln.output[0], *(["", "", add.output[0]] if sum_read else [])],
            name=f"{ln.name}/SkipLayerNorm", domain="com.microsoft", epsilon=eps)
        replaced[id(add)] = fused                  # where the Add was: its inputs are ready, y's readers follow
        gone.add(id(ln))
    if not replaced:
        return 0
    nodes = [replaced.get(id(n), n) for n in g.node if id(n) not in gone]
    del g.node[:]
    g.node.extend(nodes)
    return len(replaced)


def _stored(name: str, producer: dict, constants: dict) -> str | None:
    """The float32 initializer ``name`` is (through Identity nodes: optimum stores equal weights once), or None."""
    while name not in constants and name in producer and producer[name].op_type == "Identity":
        name = producer[name].input[0]
    return name if constants.get(name) == FLOAT else None


def single_input_concats(g) -> int:
    """Remove every ``Concat`` of one input from graph ``g`` (in place; a copy: its readers read the input
    instead), unless its output is a graph output; returns how many were removed."""
    outputs = {o.name for o in g.output}
    alias = {n.output[0]: n.input[0] for n in g.node
             if n.op_type == "Concat" and len(n.input) == 1 and n.output[0] not in outputs}
    for name in alias:                                  # a copy of a copy reads the first input
        while alias[name] in alias:
            alias[name] = alias[alias[name]]
    for n in _nodes(g):                                 # subgraphs read outer names too
        for i, name in enumerate(n.input):
            if name in alias:
                n.input[i] = alias[name]
    kept = [n for n in g.node if not (n.op_type == "Concat" and n.output and n.output[0] in alias)]
    del g.node[:]
    g.node.extend(kept)
    return len(alias)


def _nodes(g):
    """Every node of graph ``g`` and of the subgraphs in its nodes' attributes (``If`` branches, loop bodies)."""
    for n in g.node:
        yield n
        for a in n.attribute:
            for sub in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                yield from _nodes(sub)
