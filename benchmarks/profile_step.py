"""Where a decoding step's time goes, by ONNX Runtime operator, as the batch grows.

    .venv/bin/python benchmarks/profile_step.py [--steps 100] [--batches 1 8] [--layout split]

musicgen-small-shaped model (built on first use), q8 decoder (Xenova's recipe), greedy, guidance 3, 2 threads.
Every session is opened with ONNX Runtime's profiler on; the kernel time of each operator type in the decoder's
graphs is summed over the run and divided by the steps: milliseconds a step, beside the step's matmul floor
(``bench_matmul.py``'s JSON, if present). Prints a markdown table per batch, writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_batch import PROMPTS  # noqa: E402
from build_small_shapes import ensure  # noqa: E402
from common import markdown_table, write_json  # noqa: E402

import mglab  # noqa: E402
from mglab.onnx import session as ort_session  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MATMUL_OPS = {"DynamicQuantizeMatMul", "MatMulIntegerToFloat", "MatMulNBits", "MatMul", "FusedMatMul", "Gemm",
              "DynamicQuantizeLinear", "MatMulInteger"}


def profiled(folder: Path):
    """``mglab.onnx.session._options`` with the profiler on, writing into ``folder``."""
    plain = ort_session._options

    def options(*args, **kwargs):
        o = plain(*args, **kwargs)
        o.enable_profiling = True
        o.profile_file_prefix = str(folder / "ort")
        return o

    return options


def by_operator(files: list[Path]) -> dict[str, float]:
    """Kernel microseconds summed per operator type over ONNX Runtime profile files."""
    total = defaultdict(float)
    for f in files:
        for event in json.loads(f.read_text()):
            if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
                total[event["args"]["op_name"]] += event["dur"]
    return dict(total)


def run(path: Path, batch: int, steps: int, layout: str) -> dict[str, float]:
    parts = ["decoder_model_merged"] if layout == "merged" else ["decoder_model", "decoder_with_past_model"]
    with tempfile.TemporaryDirectory() as tmp:
        plain = ort_session._options
        ort_session._options = profiled(Path(tmp))
        try:
            model = mglab.load(path, dtype={p: "q8" for p in parts}, decoder=layout)
            model.generate(PROMPTS[:batch], max_new_tokens=steps, do_sample=False, guidance_scale=3.0)
            dec = model.decoder
            sessions = {id(s): s for s in [dec.first, dec.inplace, *dec._plain.values()] if s is not None}
            files = [Path(s.session.end_profiling()) for s in sessions.values()]
        finally:
            ort_session._options = plain
        return {op: us / 1e3 / steps for op, us in by_operator(files).items()}       # ms a step


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--layout", choices=["split", "merged"], default="split")
    parser.add_argument("--json", type=Path, default=ROOT / "reports" / "profile_step.json")
    args = parser.parse_args(argv)
    path = ensure()
    result = {}
    for batch in args.batches:
        ms = run(path, batch, args.steps, args.layout)
        result[batch] = ms
        matmul = sum(v for k, v in ms.items() if k in MATMUL_OPS)
        rows = sorted(ms.items(), key=lambda kv: -kv[1])[:12]
        print(f"\nbatch {batch} ({2 * batch} rows), {args.layout}: kernels {sum(ms.values()):.2f} ms a step, "
              f"matmuls (with their activation quantization) {matmul:.2f}, the rest {sum(ms.values()) - matmul:.2f}")
        print(markdown_table(["operator", "ms a step", "share"],
                             [[op, f"{v:.3f}", f"{100 * v / sum(ms.values()):.0f}%"] for op, v in rows]))
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
