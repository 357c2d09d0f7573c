"""Sweep throughput: generations per minute, a serial loop vs ``mglab.sweep`` on 1 and 2 Dask workers.

    .venv/bin/python benchmarks/bench_sweep.py [--model DIR] [--rows 16] [--duration 2.0]

One run on the same machine: a serial loop of ``generate`` (one row at a time), then ``mglab.sweep`` on a
``LocalCluster`` of 1 and of 2 worker processes (one thread each; cluster start and model loading included).
Each row is generated and measured (``mglab.audio.evaluate.measure``, as a research sweep does; ``--no-evaluate``:
generation only). Rows are prompts x seeds; the sweep batches rows that differ only in
their prompt. Prints a markdown table and writes JSON (``--json``, default ``reports/bench_sweep.json``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, write_json  # noqa: E402

import mglab  # noqa: E402

PROMPTS = ["a slow low organ melody", "a fast high flute scale", "a soft mid piano arpeggio", "a loud violin melody"]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "data" / "models" / "nano-musicgen")
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--no-evaluate", dest="evaluate", action="store_false")
    parser.add_argument("--json", type=Path, default=ROOT / "reports" / "bench_sweep.json")
    args = parser.parse_args(argv)
    from distributed import Client, LocalCluster

    model = mglab.load(args.model)
    seeds = list(range(max(1, args.rows // len(PROMPTS))))
    grid = {"prompt": PROMPTS, "seed": seeds}
    rows = len(PROMPTS) * len(seeds)
    from mglab.audio import evaluate

    t = time.perf_counter()
    for prompt in PROMPTS:
        for seed in seeds:
            gen = model.generate(prompt, seed=seed, duration=args.duration)
            if args.evaluate:
                evaluate.measure(gen.audio[0], gen.sample_rate)
    seconds = {"serial loop": time.perf_counter() - t}
    for workers in (1, 2):
        t = time.perf_counter()
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cl, \
                Client(cl) as client, tempfile.TemporaryDirectory() as out:
            table = mglab.sweep(model, grid, out, client=client, evaluate=args.evaluate, progress=False,
                                duration=args.duration)
            assert (table["status"] == "ok").all()
        seconds[f"sweep, {workers} worker{'s' * (workers > 1)}"] = time.perf_counter() - t
    result = {"model": str(args.model), "rows": rows, "duration": args.duration, "cores": os.cpu_count(),
              "evaluate": args.evaluate,
              "seconds": seconds, "per_minute": {k: 60 * rows / v for k, v in seconds.items()}}
    base = seconds["serial loop"]
    what = "generated and measured" if args.evaluate else "generated"
    header = [f"run ({rows} clips of {args.duration:g} s, {what})", "seconds", "generations/min", "vs serial"]
    print(markdown_table(header, [[k, f"{v:.1f}", f"{60 * rows / v:.1f}", f"{base / v:.2f}x"]
                                  for k, v in seconds.items()]))
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
