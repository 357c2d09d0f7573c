"""Peak memory of one 30 s generation, in a fresh process: the files as published (merged decoder, q8).

    .venv/bin/python benchmarks/bench_rss.py [--model DIR] [--dtype q8] [--seconds 30]

musicgen-small-shaped model (built on first use), greedy, guidance 3, batch 1. Prints the peak resident set
size after loading and after generating (``resource.getrusage``, this process only), and the run's seconds.
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_small_shapes import ensure  # noqa: E402

import mglab  # noqa: E402


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv=None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--dtype", default="q8")
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args(argv)
    model = mglab.load(args.model or ensure(), dtype={"decoder_model_merged": args.dtype}, decoder="merged")
    loaded = peak_mb()
    start = time.perf_counter()
    gen = model.generate("lofi piano", duration=args.seconds, do_sample=False, guidance_scale=3.0)
    took = time.perf_counter() - start
    print(f"{args.dtype} merged, {gen.duration:.1f} s of audio in {took:.1f} s: peak RSS {loaded:.0f} MB after "
          f"loading, {peak_mb():.0f} MB after generating")


if __name__ == "__main__":
    main()
