"""Why nano-magnet misses a tempo word, read from its codes: for slow, moderate and fast melodies (three
instruments, d major, 4 seeds, 4 s), the tempo word the evaluator hears, and how often codebook 0 (the pitch)
changes and how many of those changes are legato (no strike in codebook 1), under the given settings.

    .venv/bin/python benchmarks/magnet_tempo_codes.py [--settings '{"span_scoring": "prod"}']

A slow melody has fewer than 8 notes in 4 s; one-frame blips inside held notes show as many legato changes
(docs/guide/masked.md, "One unsure frame in a sure span").
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import mglab
from mglab.audio import evaluate
from mglab.nano import synth

ROOT = Path(__file__).resolve().parents[1]


def changes(codes: np.ndarray) -> tuple[int, int]:
    """Codebook-0 changes in ``codes [K, T]``, and those between sounding frames without a strike (legato)."""
    pitch = codes[0]
    note = (pitch >= 1) & (pitch <= synth.PITCHES)                             # [T]
    changed = np.r_[False, pitch[1:] != pitch[:-1]]                           # [T]
    legato = changed & note & np.r_[False, note[:-1]] & ~synth.is_strike(codes[1])
    return int(changed.sum()), int(legato.sum())


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=ROOT / "data" / "models" / "nano-magnet")
    p.add_argument("--settings", type=json.loads, default={}, help="generate's arguments, as JSON")
    p.add_argument("--seeds", type=int, default=4)
    args = p.parse_args(argv)
    model, hits, total = mglab.load(args.model), 0, 0
    for tempo in ("slow", "moderate", "fast"):
        for instrument in ("piano", "flute", "violin"):
            prompt = f"a {tempo} {instrument} melody in d major"
            gen = model.generate([prompt] * args.seeds, duration=4, seed=list(range(args.seeds)), **args.settings)
            heard = [evaluate.measure(gen.audio[i, 0], gen.sample_rate)["tempo"] for i in range(args.seeds)]
            counts = [changes(gen.codes[i]) for i in range(args.seeds)]
            hits, total = hits + sum(h == tempo for h in heard), total + args.seeds
            print(f"{prompt}: heard {heard}; codebook-0 changes (legato) {counts}", flush=True)
    print(f"{args.settings or 'the defaults'}: tempo {hits} of {total}")
    return {"hits": hits, "clips": total}


if __name__ == "__main__":
    main()
