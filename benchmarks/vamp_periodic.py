"""How much a periodic vamp can vary on the nano codec: ``periodic(8, 1)`` at several temperatures.

    .venv/bin/python benchmarks/vamp_periodic.py [--clips 24] [--temperatures 1 2 3 5]

``vamp_nano.py``'s sources (held-out prompts that name an instrument, 6 s, made by nano-musicgen as at
``--source-commit``), each vamped by ``--model`` with one frame in 8 kept, at each temperature (the rest of the
model's "vamp" defaults). Per temperature: the share of frames whose note (codebook 0) changed, the share that
changed in any codebook, and how often the whole clip keeps the source's key and mode (the evaluator on 6 s).
Beside them, from the sources alone, the share of frames that lie between two kept frames whose notes differ
(:func:`vamp_nano.between_changes`): where a variation that holds each kept note until the next has a change to
place. More than that means notes the kept frames do not ask for.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, model_at, write_json  # noqa: E402
from vamp_nano import PERIOD, SECONDS, between_changes, key_mode, prompts  # noqa: E402

import mglab  # noqa: E402
from mglab.audio import evaluate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def sources(source_model, count: int) -> list:
    """``vamp_nano.py``'s first ``count`` sources: (Generation, seed, the source's key and mode)."""
    out = []
    for seed, (prompt, _) in enumerate(prompts(count)):
        gen = source_model.generate(prompt, duration=SECONDS, seed=seed)
        out.append((gen, seed, key_mode(evaluate.measure(gen.audio[0, 0], gen.sample_rate))))
    return out


def row(model, srcs, temperature: float) -> dict:
    changed, anywhere, kept = [], [], []
    for gen, seed, km in srcs:
        v = model.vamp(gen, mglab.masks.periodic(PERIOD, 1), seed=seed + 2, temperature=temperature)
        changed.append(float((v.codes[0, 0] != gen.codes[0, 0]).mean()))                # [T] -> share
        anywhere.append(float((v.codes[0] != gen.codes[0]).any(axis=0).mean()))
        got = key_mode(evaluate.measure(v.audio[0, 0], v.sample_rate))
        if got is not None and km is not None:
            kept.append(got == km)
    return {"temperature": temperature, "note changed": float(np.mean(changed)),
            "any codebook changed": float(np.mean(anywhere)), "keeps key+mode": float(np.mean(kept)),
            "key measured": len(kept)}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=ROOT / "data" / "models" / "nano-magnet")
    p.add_argument("--source-commit", default="a13b50d", help="nano-musicgen as committed here makes the sources")
    p.add_argument("--clips", type=int, default=24)
    p.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 2.0, 3.0, 5.0])
    p.add_argument("--json", type=Path, default=ROOT / "reports" / "vamp_periodic.json")
    args = p.parse_args(argv)
    if args.clips < 1:
        p.error(f"--clips {args.clips}: give at least 1")
    if min(args.temperatures) <= 0:
        p.error(f"--temperatures {args.temperatures}: each must be > 0")
    model, source_model = mglab.load(args.model), mglab.load(model_at(args.source_commit))
    srcs = sources(source_model, args.clips)
    between = float(np.mean([between_changes(g.codes[0, 0], PERIOD) for g, _, _ in srcs]))
    rows = [row(model, srcs, t) for t in args.temperatures]
    print(f"frames between kept notes that differ: {100 * between:.0f}% ({args.clips} sources)")
    print(markdown_table(["temperature", "note changed", "any codebook changed", "keeps key+mode"],
                         [[f"{r['temperature']:g}", f"{100 * r['note changed']:.0f}%",
                           f"{100 * r['any codebook changed']:.0f}%",
                           f"{100 * r['keeps key+mode']:.0f}% of {r['key measured']}"] for r in rows]))
    out = {"model": str(args.model), "source_commit": args.source_commit, "clips": args.clips,
           "between": between, "rows": rows}
    write_json(args.json, out)
    return out


if __name__ == "__main__":
    main()
