"""Quantized variants of an export's graphs, made the way the published ``Xenova/musicgen-*`` files were.

    python scripts/quantize.py data/models/tiny-musicgen/onnx/decoder_model_merged.onnx q8 q4 ...
    python -m mglab.onnx.quantize ...        (the same; ``mglab export`` uses it too)

The recipe is Xenova's (``quantize_config.json`` of ``Xenova/musicgen-small``, run by transformers.js's
``scripts/quantize.py``); this is our own implementation of it with ONNX Runtime's quantizers::

    variant  file suffix   how
    fp16     _fp16         float16 weights and activations, float32 inputs and outputs (keep_io_types)
    q8       _quantized    dynamic int8: QInt8 weights (QUInt8 if the graph has a Conv), per channel, reduced
                           range, every op type present (Gather tables, Conv, ConvTranspose, LSTM), inside
                           the merged decoder's If branches too
    int8     _int8         the same with QInt8 weights, per tensor, full range
    uint8    _uint8        the same with QUInt8 weights, per tensor, full range
    bnb4     _bnb4         MatMulBnb4 (nf4, block 64)
    q4       _q4           MatMulNBits (block 32, symmetric, accuracy level unset)
    q4f16    _q4f16        q4, then fp16

EnCodec's convolution weights are computed in the graph (weight norm: ``g * v / |v|``); they are constant-folded
first (ONNX Runtime's basic graph optimizations), or the quantizer would leave Conv in float.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from ..core.fileio import atomic_write
from .modelfiles import SUFFIXES

VARIANTS = tuple(v for v in SUFFIXES if v != "fp32")
QUINT8_OPS = ("Conv",)          # a graph with these gets QUInt8 weights in q8 (ConvInteger wants them)


def graphs(graph):
    """``graph`` and every subgraph in it (If branches), depth first."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.g.node:
                yield from graphs(attr.g)


def operators(model) -> set[str]:
    """Every op type in ``model``, subgraphs included."""
    return {node.op_type for g in graphs(model.graph) for node in g.node}


def fold_constants(src: Path, dst: Path) -> None:
    """``src`` with constant subgraphs computed (EnCodec's weight norm becomes plain Conv weights)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(dst)
    ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])


def eight_bit(model, weight_type, per_channel: bool, reduce_range: bool):
    """Dynamic 8-bit quantization of every op type present, If branches included."""
    from onnxruntime.quantization import QuantizationMode, QuantType
    from onnxruntime.quantization.onnx_quantizer import ONNXQuantizer

    quantizer = ONNXQuantizer(model, per_channel, reduce_range, mode=QuantizationMode.IntegerOps, static=False,
                              weight_qType=weight_type, activation_qType=QuantType.QUInt8, tensors_range=None,
                              nodes_to_quantize=[], nodes_to_exclude=[], op_types_to_quantize=operators(model),
                              extra_options={"EnableSubgraph": True, "MatMulConstBOnly": True})
    quantizer.quantize_model()
    return quantizer.model.model


def fp16(model, keep_io_types: bool = True):
    """float16 inside, float32 inputs and outputs (``keep_io_types=False``: float16 ones too, as some exporters
    write). The export's explicit ``Cast(to=float)`` nodes (T5's layer norm, the positional embedding, EnCodec's
    weight norm) become casts to float16 and stale shape annotations are dropped first; then the two casts
    onnxconverter-common's ``keep_io_types`` misses are added."""
    from onnx import TensorProto
    from onnxconverter_common import float16

    for g in graphs(model.graph):
        del g.value_info[:]
        for node in g.node:
            for attr in node.attribute:
                if node.op_type == "Cast" and attr.name == "to" and attr.i == TensorProto.FLOAT:
                    attr.i = TensorProto.FLOAT16
    model = float16.convert_float_to_float16(model, keep_io_types=keep_io_types, disable_shape_infer=True,
                                             check_fp16_ready=False)
    if keep_io_types:
        _cast_branch_inputs(model.graph)
        _own_readers_keep_fp16(model.graph)
    return model


def _cast_branch_inputs(g) -> None:
    """The converter casts only the float inputs that top-level nodes read; a merged decoder's ``If`` branches
    read theirs (``encoder_hidden_states``, the past KV) directly: give those a cast too."""
    from onnx import TensorProto, helper

    floats = {i.name for i in g.input if i.type.tensor_type.elem_type == TensorProto.FLOAT}
    unread = floats - {x for n in g.node for x in n.input}
    inner = [n for sub in list(graphs(g))[1:] for n in sub.node]
    casts = []
    for name in sorted(unread):
        readers = [n for n in inner if name in n.input]
        for n in readers:
            n.input[:] = [f"{name}/fp16" if x == name else x for x in n.input]
        if readers:
            casts.append(helper.make_node("Cast", [name], [f"{name}/fp16"], to=TensorProto.FLOAT16,
                                          name=f"/cast_input/{name}"))
    nodes = casts + list(g.node)
    del g.node[:]
    g.node.extend(nodes)


def _own_readers_keep_fp16(g) -> None:
    """An output the graph also reads itself (the split decoders' present KV, read by attention) is cast to
    float32 for the caller, and the converter hands the graph's own readers that float32 copy: give them the
    float16 tensor. Top level only: an If branch's own outputs may share the names."""
    outputs = {o.name for o in g.output}
    back = {n.output[0]: n.input[0] for n in g.node if n.op_type == "Cast" and n.output[0] in outputs}
    for n in g.node:
        if not (n.op_type == "Cast" and n.output[0] in back):
            n.input[:] = [back.get(x, x) for x in n.input]


def q4(model):
    """The q4 variant: ``MatMulNBits``, block 32, symmetric, accuracy level unset."""
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    quantizer = MatMulNBitsQuantizer(model, block_size=32, is_symmetric=True, accuracy_level=None)
    quantizer.process()
    return quantizer.model.model


def bnb4(model):
    """The bnb4 variant: ``MatMulBnb4``, nf4, block 64."""
    from onnxruntime.quantization.matmul_bnb4_quantizer import MatMulBnb4Quantizer

    quantizer = MatMulBnb4Quantizer(model, quant_type=MatMulBnb4Quantizer.NF4, block_size=64)
    quantizer.process()
    return quantizer.model.model


def make(src: Path, variant: str, dst: Path | None = None) -> Path:
    """Write ``variant`` of the graph ``src`` beside it (``decoder_model_merged_q4.onnx``) or to ``dst``."""
    import onnx
    from onnxruntime.quantization import QuantType

    if variant not in VARIANTS:
        raise ValueError(f"variant={variant!r} is not known; allowed: {list(VARIANTS)}")
    src = Path(src)
    dst = dst or src.with_name(f"{src.stem}{SUFFIXES[variant]}.onnx")
    with tempfile.TemporaryDirectory() as tmp:
        model = onnx.load(src)
        if variant in ("q8", "int8", "uint8") and "Conv" in operators(model):
            fold_constants(src, Path(tmp) / "folded.onnx")
            model = onnx.load(Path(tmp) / "folded.onnx")
        if variant == "q8":
            weights = QuantType.QUInt8 if operators(model) & set(QUINT8_OPS) else QuantType.QInt8
            out = eight_bit(model, weights, per_channel=True, reduce_range=True)
        elif variant in ("int8", "uint8"):
            weights = QuantType.QInt8 if variant == "int8" else QuantType.QUInt8
            out = eight_bit(model, weights, per_channel=False, reduce_range=False)
        else:
            out = {"fp16": fp16, "q4": q4, "bnb4": bnb4, "q4f16": lambda m: fp16(q4(m))}[variant](model)
    return atomic_write(dst, lambda tmp: onnx.save(out, tmp))


def main(argv=None) -> None:
    """``python -m mglab.onnx.quantize GRAPH VARIANT...``: write the variants beside the graph."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("graph", type=Path)
    parser.add_argument("variants", nargs="+", choices=list(VARIANTS))
    args = parser.parse_args(argv)
    for v in args.variants:
        print(make(args.graph, v))


if __name__ == "__main__":
    main()
