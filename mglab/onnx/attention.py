"""Attention probabilities as graph outputs, a load-time rewrite.

The published exports return logits and the KV cache, not attention probabilities. To show them, the
softmax output of each layer's self- and cross-attention is made an extra graph output, named
``attentions.{i}.self`` ``[H*B, heads, q, pos]`` and ``attentions.{i}.cross`` ``[H*B, heads, q, text_len]``.
In the merged decoder the softmaxes live inside both branches of the ``If``: each branch gets the outputs
(in the same order) and so do the ``If`` node and the graph. Built once into the cache (:mod:`.graphfile`),
only when an attention hook is asked for.
"""

from __future__ import annotations

import re
from pathlib import Path

from .graphfile import cached, load, save

SOFTMAX = re.compile(r"layers\.(\d+)/(self_attn|encoder_attn)/")


def with_attention(src: Path) -> Path:
    """Path of ``src`` rewritten to output attention probabilities, building it once."""
    return cached(src, "attn-v1", _rewrite)


def attention_outputs(graph) -> list[tuple[str, str]]:
    """``[(tensor_name, output_name), ...]`` for the attention softmaxes of one (sub)graph, layer order."""
    found = []
    for node in graph.node:
        if node.op_type != "Softmax":
            continue
        m = SOFTMAX.search(node.name)
        if m:
            kind = "self" if m.group(2) == "self_attn" else "cross"
            found.append((int(m.group(1)), kind, node.output[0]))
    found.sort(key=lambda f: (f[0], f[1] != "self"))
    return [(tensor, f"attentions.{layer}.{kind}") for layer, kind, tensor in found]


def _rewrite(src: Path, dst: Path) -> None:
    from onnx import TensorProto, helper

    model = load(src)
    graph = model.graph
    if_nodes = [n for n in graph.node if n.op_type == "If"]
    if if_nodes:                      # merged decoder: the softmaxes are inside both branches
        node = if_nodes[0]
        names = None
        for attr in node.attribute:
            outs = attention_outputs(attr.g)
            for tensor, _ in outs:
                attr.g.output.append(helper.make_tensor_value_info(tensor, TensorProto.FLOAT, None))
            branch_names = [name for _, name in outs]
            if names is not None and branch_names != names:
                raise ValueError(f"{src.name}: the If branches have different attention softmaxes")
            names = branch_names
        node.output.extend(names)
    else:
        names = []
        for tensor, name in attention_outputs(graph):
            graph.node.append(helper.make_node("Identity", [tensor], [name], name=f"expose_{name}"))
            names.append(name)
    if not names:
        raise ValueError(f"{src.name}: no attention softmax found to expose")
    for name in names:
        graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    save(model, dst)
