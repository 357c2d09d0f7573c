"""Batches: frames a second for 1, 2, 4 and 8 prompts, and where a step's time goes as the batch grows.

    .venv/bin/python benchmarks/bench_batch.py [--model DIR] [--steps 100]

musicgen-small-shaped model (built on first use), merged decoder as published (q8; q4 with
``matmul_accuracy=4``) and the split pair with the in-place KV cache (q8), greedy, guidance 3, one run,
2 threads. A step is split by hook timestamps into the decoder graph (``decoder.hook_input_ids`` ->
``guidance.hook_cond_logits``: ONNX Runtime, the KV-cache binding included) and the rest (guidance, sampling,
the delay pattern, numpy); what a call spends before the first step (the text encoder) and after the last
(mostly the codec turning every row's codes into audio) is given per call. Prints a markdown table, writes JSON.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_small_shapes import ensure  # noqa: E402
from common import markdown_table, write_json  # noqa: E402

import mglab  # noqa: E402

PROMPTS = ["lofi piano", "80s pop track with bassy drums and synth", "ambient pad with slow strings",
           "jazz trio with upright bass", "techno beat with a deep kick", "acoustic guitar folk song",
           "orchestral film score with horns", "hip hop beat with vinyl crackle"]
# (label, dtype, matmul accuracy level, decoder layout): the merged decoder as published (its If branch and
# Concat copy outputs each step), and the split pair with mglab's in-place KV cache (no If, no Concat)
ROWS = [("q8", "q8", None, "merged"), ("q4, accuracy level 4", "q4", 4, "merged"),
        ("q8, split pair, in-place cache", "q8", None, "split")]


def split_times(model, batch: int, steps: int) -> tuple[float, float, float, float, float]:
    """(seconds in all, decoder seconds a step, rest seconds a step, seconds before the first step, seconds after
    the last) over ``steps`` greedy guided steps."""
    marks = []
    hooks = [("decoder.hook_input_ids", lambda v, h: marks.append(("in", time.perf_counter()))),
             ("guidance.hook_cond_logits", lambda v, h: marks.append(("out", time.perf_counter())))]
    start = time.perf_counter()
    model.generate(PROMPTS[:batch], max_new_tokens=steps, do_sample=False, guidance_scale=3.0, hooks=hooks)
    end = time.perf_counter()
    total = end - start
    ins = [t for k, t in marks if k == "in"]
    outs = [t for k, t in marks if k == "out"]
    decoder = float(np.mean(np.subtract(outs, ins)[1:]))                       # the first step fills the cache
    per_step = float(np.mean(np.diff(ins)[1:]))
    return total, decoder, per_step - decoder, ins[0] - start, end - outs[-1]


def main(argv=None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--json", type=Path, default=Path("reports") / "bench_batch.json")
    args = parser.parse_args(argv)
    path = args.model or ensure()
    rows, result = [], {}
    for label, dtype, level, layout in ROWS:
        parts = ["decoder_model_merged"] if layout == "merged" else ["decoder_model", "decoder_with_past_model"]
        model = mglab.load(path, dtype={p: dtype for p in parts}, decoder=layout, matmul_accuracy=level)
        model.generate(PROMPTS[:1], max_new_tokens=8, do_sample=False)                 # warm-up
        base = None
        for batch in (1, 2, 4, 8):
            total, decoder, rest, before, after = split_times(model, batch, args.steps)
            fps = batch * args.steps / total
            base = base or fps
            result[f"{label} x{batch}"] = {"frames_per_s": fps, "decoder_ms": 1e3 * decoder, "rest_ms": 1e3 * rest,
                                           "before_ms": 1e3 * before, "after_ms": 1e3 * after}
            rows.append([label, batch, f"{fps:.1f}", f"{fps / base:.2f}x", f"{1e3 * decoder:.1f}",
                         f"{1e3 * rest:.2f}", f"{1e3 * before:.0f}", f"{1e3 * after:.0f}"])
            print(rows[-1], flush=True)
        del model
    print(markdown_table(["decoder", "batch", "frames/s", "vs batch 1", "decoder ms/step",
                          "rest ms/step", "before the steps, ms", "after them (codec), ms"], rows))
    write_json(args.json, result)


if __name__ == "__main__":
    main()
