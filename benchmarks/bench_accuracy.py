"""The files users download, merged decoder, with and without the accuracy-level rewrite: speed and its cost.

    .venv/bin/python benchmarks/bench_accuracy.py [--model DIR] [--steps 500] [--quality-steps 100]

On the musicgen-small-shaped model (built on first use), 2 threads as ONNX Runtime picks them, greedy,
guidance 3, batch 1, one run: for fp32, q8 and q4 (Xenova's recipe) and q4 with ``matmul_accuracy=4``
(:mod:`mglab.onnx.accuracy`): steps/s over ``--steps`` decoding steps (after a 10-step warm-up), and against fp32
over ``--quality-steps`` steps: the share of greedy tokens equal to fp32's and the SNR of the audio (dB). Random
weights make a model whose tokens are fragile; the agreement is a lower bound of what a trained model keeps.
Prints a markdown table and writes JSON.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_small_shapes import ensure  # noqa: E402
from common import markdown_table, step_times, write_json  # noqa: E402

import mglab  # noqa: E402

ROWS = [("fp32", "fp32", None), ("q8", "q8", None), ("q4", "q4", None), ("q4, accuracy level 4", "q4", 4)]


def main(argv=None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--quality-steps", type=int, default=100)
    parser.add_argument("--json", type=Path, default=Path("reports") / "bench_accuracy.json")
    args = parser.parse_args(argv)
    path = args.model or ensure()
    rows, result, reference = [], {"steps": args.steps, "rows": {}}, None
    for label, dtype, level in ROWS:
        model = mglab.load(path, dtype={"decoder_model_merged": dtype}, decoder="merged", matmul_accuracy=level)
        step_times(model, 10)                                                        # warm-up
        rate = 1 / float(np.mean(step_times(model, args.steps)))
        gen = model.generate("lofi piano", max_new_tokens=args.quality_steps, do_sample=False, guidance_scale=3.0)
        if reference is None:
            reference = gen
        agree = float((gen.tokens == reference.tokens).mean())
        err = float(np.sum((gen.audio - reference.audio) ** 2))
        snr = float("inf") if err == 0 else float(10 * np.log10(np.sum(reference.audio ** 2) / err))
        result["rows"][label] = {"steps_per_s": rate, "tokens_equal_fp32": agree, "snr_db": snr}
        rows.append([label, f"{rate:.1f}", f"{100 * agree:.1f}%", "exact" if np.isinf(snr) else f"{snr:.1f}"])
        print(rows[-1], flush=True)
        del model
    print(markdown_table(["merged decoder", "steps/s", f"tokens = fp32 ({args.quality_steps} steps)",
                          "audio SNR vs fp32 (dB)"], rows))
    write_json(args.json, result)


if __name__ == "__main__":
    main()
