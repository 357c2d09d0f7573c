"""Streaming: how soon the first audio arrives, against the time of the whole generation.

    .venv/bin/python benchmarks/bench_stream.py [--model DIR] [--duration 10] [--chunk 1.0]

On the musicgen-small-shaped model by default (built on first use). One run: ``generate`` for the total time,
then ``stream`` for the time to the first chunk and to the last; prints a markdown table, writes JSON.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_small_shapes import load_model, model_parser  # noqa: E402
from common import write_json  # noqa: E402


def main(argv=None) -> dict:
    parser = model_parser(__doc__, "bench_stream.json")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--chunk", type=float, default=1.0)
    args = parser.parse_args(argv)
    model = load_model(args)
    kw = dict(duration=args.duration, seed=0)

    t = time.perf_counter()
    full = model.generate("lofi piano", **kw)
    total = time.perf_counter() - t

    t, arrivals, chunks = time.perf_counter(), [], []
    for chunk in model.stream("lofi piano", chunk_duration=args.chunk, **kw):
        arrivals.append(time.perf_counter() - t)
        chunks.append(chunk)
    joined = np.concatenate(chunks, axis=-1)
    result = {"model": str(args.model), "dtype": args.dtype, "decoder": args.decoder, "duration": args.duration,
              "chunk": args.chunk, "generate_s": total, "first_chunk_s": arrivals[0], "last_chunk_s": arrivals[-1],
              "chunks": len(chunks), "first_chunk_share": arrivals[0] / total,
              "max_abs_diff_vs_one_shot": float(np.abs(joined - full.audio).max())}
    print(f"| {args.duration:g} s, {args.dtype} {args.decoder}, chunks of {args.chunk:g} s | seconds |")
    print("|---|---|")
    print(f"| generate (whole) | {total:.2f} |")
    print(f"| stream: first chunk | {arrivals[0]:.2f} ({100 * arrivals[0] / total:.0f}% of generate) |")
    print(f"| stream: last chunk | {arrivals[-1]:.2f} |")
    print(f"\n{len(chunks)} chunks; joined vs one-shot decode: max |diff| {result['max_abs_diff_vs_one_shot']:.2e}")
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
