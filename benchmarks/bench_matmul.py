"""The matmul floor of a decoding step: how fast ONNX Runtime multiplies musicgen-small's weights as rows grow.

    .venv/bin/python benchmarks/bench_matmul.py [--repeats 20]

Two measurements, 2 threads, the median of ``--repeats`` runs, the weights quantized the way the published
files are (q8: Xenova's recipe, which ONNX Runtime fuses into ``DynamicQuantizeMatMul``; q4: ``MatMulNBits``,
block 32, at accuracy level 4 as ``mglab.load(..., matmul_accuracy=4)`` runs it; fp32 for reference):

- kernels: one ``MatMul`` per weight shape of musicgen-small's decoder, ``[rows, 1024] x [1024, 1024]``,
  ``x [1024, 4096]``, ``[rows, 4096] x [4096, 1024]`` and a codebook head ``x [1024, 2048]``. Run again and
  again, its weights stay in the CPU's caches: this is the kernel's compute rate (GMAC/s).
- a step's matmuls: one graph holding every matmul of a decoding step with its own weights, in order (24
  layers x (6 of 1024 x 1024: self-attention q, k, v, out and cross-attention q, out; fc1; fc2), then the 4
  heads), so the weights stream from memory as in the model. Nothing else (attention, layer norms, the
  cache): a floor on the decoder's time per step.

A decoding step with guidance runs 2 rows a prompt: batch 1, 2, 4, 8 are 2, 4, 8, 16 rows. The floor is set
beside ``bench_batch.py``'s measured decoder time (``reports/bench_batch.json``, if present) and the time a
step may take for the issue's targets. Prints markdown, writes JSON.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
# the speed issue's targets: batch 4 at >= 2.5x the frames/s of batch 1, batch 8 at >= 3.5x
BATCH_TARGETS = {4: 2.5, 8: 3.5}
from common import markdown_table, write_json  # noqa: E402

from mglab.onnx import accuracy, quantize  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
D, FFN, VOCAB, LAYERS, HEADS = 1024, 4096, 2048, 24, 4
SHAPES = {"1024x1024": (D, D), "fc1 1024x4096": (D, FFN), "fc2 4096x1024": (FFN, D), "head 1024x2048": (D, VOCAB)}
PER_STEP = {"1024x1024": 6 * LAYERS, "fc1 1024x4096": LAYERS, "fc2 4096x1024": LAYERS, "head 1024x2048": HEADS}
ROWS = (2, 4, 8, 16)
VARIANTS = ("fp32", "q8", "q4 level 4")


def matmul_graph(path: Path, k: int, n: int, seed: int = 0) -> Path:
    """A one-node graph ``y = x @ W`` with ``W [k, n]`` random (fp32), dynamic rows."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(seed).normal(0, 0.02, (k, n)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])], "matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["rows", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["rows", n])],
        [numpy_helper.from_array(w, "W")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                        helper.make_opsetid("com.microsoft", 1)]), path)
    return path


def variant_file(src: Path, variant: str) -> Path:
    if variant == "fp32":
        return src
    if variant == "q8":
        return quantize.make(src, "q8")
    q4 = quantize.make(src, "q4")
    import onnx

    model = onnx.load(q4)
    assert accuracy.set_level(model, 4) >= 1
    onnx.save(model, q4)
    return q4


def seconds_per_call(path: Path, rows: int, k: int, repeats: int) -> float:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = 2, 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).normal(size=(rows, k)).astype(np.float32)
    for _ in range(5):
        sess.run(None, {"x": x})
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        sess.run(None, {"x": x})
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def step_graph(path: Path, layers: int = LAYERS, seed: int = 0) -> Path:
    """Every matmul of a decoding step, each with its own random weights, in the model's order: ``x [rows,
    1024]`` through ``layers`` x (6 square, fc1, fc2), then the heads; outputs the heads' logits."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes, weights, side, h = [], [], [], "x"
    shapes = [(D, D)] * 6 + [(D, FFN), (FFN, D)]
    for i in range(layers):
        for j, (k, n) in enumerate(shapes):
            weights.append(numpy_helper.from_array(rng.normal(0, 0.02, (k, n)).astype(np.float32), f"W{i}_{j}"))
            nodes.append(helper.make_node("MatMul", [h, f"W{i}_{j}"], [f"h{i}_{j}"]))
            if j < 5:          # q, k, v, out, cross q read the stream; kept as outputs, else pruned as unused
                side.append(helper.make_tensor_value_info(f"h{i}_{j}", TensorProto.FLOAT, None))
            else:              # cross out, fc1, fc2 carry it on
                h = f"h{i}_{j}"
    outputs = []
    for c in range(HEADS):
        name = f"head{c}"
        weights.append(numpy_helper.from_array(rng.normal(0, 0.02, (D, VOCAB)).astype(np.float32), name))
        nodes.append(helper.make_node("MatMul", [h, name], [f"logits{c}"]))
        outputs.append(helper.make_tensor_value_info(f"logits{c}", TensorProto.FLOAT, ["rows", VOCAB]))
    graph = helper.make_graph(nodes, "step", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["rows", D])],
                              outputs + side, weights)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                        helper.make_opsetid("com.microsoft", 1)]),
              path, save_as_external_data=True, location=path.name + ".data")
    return path


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json", type=Path, default=ROOT / "reports" / "bench_matmul.json")
    args = parser.parse_args(argv)
    kernels, steps = {}, {}                                   # (variant, shape, rows) / (variant, rows) -> seconds
    with tempfile.TemporaryDirectory() as tmp:
        for shape, (k, n) in SHAPES.items():
            src = matmul_graph(Path(tmp) / f"{k}x{n}.onnx", k, n)
            for variant in VARIANTS:
                path = variant_file(src, variant)
                for rows in ROWS:
                    kernels[variant, shape, rows] = seconds_per_call(path, rows, k, args.repeats)
        src = step_graph(Path(tmp) / "step.onnx")
        for variant in VARIANTS:
            path = variant_file(src, variant)
            for rows in ROWS:
                steps[variant, rows] = seconds_per_call(path, rows, D, args.repeats)
            print(f"{variant}: step matmuls measured", flush=True)
    macs_per_row = sum(PER_STEP[s] * k * n for s, (k, n) in SHAPES.items())
    measured = {}
    batch_json = ROOT / "reports" / "bench_batch.json"
    if batch_json.is_file():
        import json
        measured = json.loads(batch_json.read_text())
    names = {"q8": "q8", "q4 level 4": "q4, accuracy level 4"}
    result = {"repeats": args.repeats, "rows": list(ROWS), "macs_per_row": macs_per_row, "kernels": [], "floor": []}
    for (variant, shape, rows), t in kernels.items():
        k, n = SHAPES[shape]
        result["kernels"].append({"variant": variant, "shape": shape, "rows": rows, "ms": 1e3 * t,
                                  "gmac_per_s": rows * k * n / t / 1e9})
    for (variant, rows), t in steps.items():
        row = {"variant": variant, "batch": rows // 2, "rows": rows, "matmul_floor_ms": 1e3 * t,
               "gmac_per_s": rows * macs_per_row / t / 1e9}
        one, got = measured.get(f"{names.get(variant)} x1"), measured.get(f"{names.get(variant)} x{rows // 2}")
        if one and got:
            row["measured_decoder_ms"] = got["decoder_ms"]
            need = BATCH_TARGETS.get(rows // 2)   # batch b at s x batch 1's frames/s: a step in b/s of its time
            if need:
                row["target_step_ms"] = (rows // 2) / need * (one["decoder_ms"] + one["rest_ms"])
        result["floor"].append(row)
    print(markdown_table(["variant", "shape", *[f"{r} rows: ms (GMAC/s)" for r in ROWS]],
                         [[v, s, *[f"{1e3 * kernels[v, s, r]:.3f} ({r * k * n / kernels[v, s, r] / 1e9:.0f})"
                                   for r in ROWS]] for v in VARIANTS for s, (k, n) in SHAPES.items()]))
    print()
    print(markdown_table(["variant", "batch (rows)", "a step's matmuls, ms", "GMAC/s", "measured decoder ms/step",
                          "a step may take (target)"],
                         [[r["variant"], f"{r['batch']} ({r['rows']})", f"{r['matmul_floor_ms']:.1f}",
                           f"{r['gmac_per_s']:.1f}",
                           f"{r['measured_decoder_ms']:.1f}" if "measured_decoder_ms" in r else "-",
                           f"{r['target_step_ms']:.1f}" if "target_step_ms" in r else "-"]
                          for r in result["floor"]]))
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
