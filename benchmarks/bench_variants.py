"""How far each quantized variant of the merged decoder strays from fp32: greedy tokens and audio.

    .venv/bin/python benchmarks/bench_variants.py [--model DIR] [--steps 100] [--variants q8 q4 ...]

On the musicgen-small-shaped model by default (``build_small_shapes.py``; missing variants are written first
with ``scripts/quantize.py``, Xenova's recipe). For each variant: greedy decoding (guidance 3, two prompts,
``--steps`` steps) against fp32 with the same text encoder and codec, the share of equal codes, the first step
where the tokens part, and the audio's SNR against fp32 (dB). Greedy decoding amplifies the first difference,
so the agreement after it is low by construction; the first divergence says more. Prints a markdown table
and writes JSON.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from build_small_shapes import ensure  # noqa: E402
from common import markdown_table, write_json  # noqa: E402
from quantize import VARIANTS, make  # noqa: E402

import mglab  # noqa: E402
from mglab.onnx.modelfiles import SUFFIXES  # noqa: E402

PROMPTS = ["lofi piano with soft drums", "an upbeat rock anthem with electric guitars"]


def compare(path: Path, variant: str, reference, steps: int) -> dict:
    model = mglab.load(path, dtype={"decoder_model_merged": variant}, decoder="merged")
    t = time.perf_counter()
    gen = model.generate(PROMPTS, max_new_tokens=steps, do_sample=False, guidance_scale=3.0)
    seconds = time.perf_counter() - t
    same = gen.tokens == reference.tokens                                      # [B, K, S]
    parted = np.flatnonzero(~same.all(axis=(0, 1)))
    noise = ((gen.audio - reference.audio) ** 2).sum()
    snr = float("inf") if noise == 0 else float(10 * np.log10((reference.audio ** 2).sum() / noise))
    return {"variant": variant, "agreement": float((gen.codes == reference.codes).mean()),
            "first_divergence": int(parted[0]) if parted.size else None, "snr_db": snr,
            "steps_per_s": steps / seconds, "file_mb": model.paths["decoder_model_merged"].stat().st_size / 1e6}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="default: the small-shapes model")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--json", type=Path, default=Path("reports") / "bench_variants.json")
    args = parser.parse_args(argv)
    path = args.model or ensure()
    merged = path / "onnx" / "decoder_model_merged.onnx"
    for v in args.variants:
        if not merged.with_name(f"{merged.stem}{SUFFIXES[v]}.onnx").is_file():
            t = time.perf_counter()
            make(merged, v)
            print(f"wrote the {v} merged decoder in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    reference = mglab.load(path, decoder="merged").generate(PROMPTS, max_new_tokens=args.steps, do_sample=False,
                                                            guidance_scale=3.0)
    rows = [compare(path, v, reference, args.steps) for v in args.variants]
    print(markdown_table(["variant", "file (MB)", "codes equal to fp32", "first divergence (step)",
                          "audio SNR vs fp32 (dB)", "steps/s"],
                         [[r["variant"], f"{r['file_mb']:.0f}", f"{100 * r['agreement']:.1f}%",
                           r["first_divergence"] if r["first_divergence"] is not None else "none",
                           f"{r['snr_db']:.1f}", f"{r['steps_per_s']:.1f}"] for r in rows]))
    result = {"model": str(path), "steps": args.steps, "prompts": PROMPTS, "rows": rows}
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
