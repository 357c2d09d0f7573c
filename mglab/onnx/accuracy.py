"""The compute precision of 4-bit matmuls: a load-time rewrite of ``MatMulNBits`` nodes' ``accuracy_level``.

Xenova's q4 and q4f16 files store 4-bit weights in ``MatMulNBits`` nodes with ``accuracy_level`` unset (0),
which ONNX Runtime's CPU kernel runs by dequantizing each weight block to float: slower than fp32 on two cores
(9.5 steps/s vs 10.8 on musicgen-small shapes). ``accuracy_level=4`` makes it quantize the activations to
int8 per block and use int8 dot products::

    level 0 (unset)  W4 -> fp32, fp32 x fp32          exact to the 4-bit weights
    level 4          W4 x A8 (A: activations, int8)   faster; activations rounded to 8 bits per block

``mglab.load(path, dtype="q4", matmul_accuracy=4)`` rewrites the graph once (every ``MatMulNBits`` node, in
the merged decoder's ``If`` branches too) into ``$MGLAB_CACHE/graphs``; components without such nodes are
untouched. ``benchmarks/bench_accuracy.py`` measures what it costs (tokens against fp32, audio SNR) and gains.

Examples
--------
>>> import mglab
>>> m = mglab.load("data/models/tiny-musicgen", dtype={"decoder_model_merged": "q4"}, matmul_accuracy=4)
>>> m.generate("lofi piano", max_new_tokens=8).codes.shape
(1, 4, 5)
"""

from __future__ import annotations

from pathlib import Path

from . import graphfile as graph

LEVELS = (0, 1, 2, 3, 4)
FOUR_BIT = ("q4", "q4f16")          # the variants whose files hold MatMulNBits


def check_level(level) -> int | None:
    """``matmul_accuracy`` checked: None or one of :data:`LEVELS`, else a ValueError."""
    if level is None:
        return None
    if isinstance(level, bool) or level not in LEVELS:
        raise ValueError(f"matmul_accuracy={level!r} is not allowed: matmul_accuracy must be None (as the file "
                         f"says) or one of {list(LEVELS)} (4: int8 activations, fastest on CPU)")
    return int(level)


def subgraphs(g):
    """``g`` and every graph inside it (an ``If`` node's branches), depth first."""
    yield g
    for node in g.node:
        for attr in node.attribute:
            if attr.type == attr.GRAPH:
                yield from subgraphs(attr.g)


def set_level(model, level: int) -> int:
    """Set ``accuracy_level`` on every ``MatMulNBits`` node of ``model``; how many there were."""
    from onnx import helper

    count = 0
    for g in subgraphs(model.graph):
        for node in g.node:
            if node.op_type == "MatMulNBits":
                kept = [a for a in node.attribute if a.name != "accuracy_level"]
                del node.attribute[:]
                node.attribute.extend(kept + [helper.make_attribute("accuracy_level", level)])
                count += 1
    return count


def apply(path: Path, level: int | None) -> Path:
    """``path`` with its ``MatMulNBits`` nodes at ``level``, cached; ``path`` itself when ``level`` is None."""
    if level is None:
        return path

    def build(src: Path, dst: Path) -> None:
        model = graph.load(src)
        set_level(model, level)
        graph.save(model, dst)

    return graph.cached(path, f"matmul-accuracy-{level}", build)
