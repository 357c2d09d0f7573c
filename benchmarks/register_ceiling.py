"""The register measure's ceiling per instrument: corpus clips of one register, each rendered with codebook 2
(the timbre) set to each of the six instruments, measured by ``mglab.audio.evaluate``: does the evaluator read the
register the codes play, whatever the instrument (low marimba included, a combination no model trained on)?

    .venv/bin/python benchmarks/register_ceiling.py [--register low] [--clips 20]

Prints, per instrument, how many clips read the register (``evaluate.adherence``'s rule: the word among those
the median pitch falls in). 2026-12-08, low: 20 of 20 for every instrument (docs/guide/models.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import mglab
from mglab.audio import evaluate
from mglab.nano import corpus, synth

ROOT = Path(__file__).resolve().parents[1]


def renders(codec, clip) -> dict:
    """``{instrument: audio [samples]}``: the clip's codes with codebook 2 set to each instrument."""
    out = {}
    for i, name in enumerate(synth.INSTRUMENTS):
        codes = clip.codes.copy()                                              # [K, T]
        codes[2] = codes[2] // len(synth.INSTRUMENTS) * len(synth.INSTRUMENTS) + i
        out[name] = codec.decode(codes[None])[0, 0]                            # [samples]
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=ROOT / "data" / "models" / "nano-musicgen")
    p.add_argument("--register", default="low", choices=sorted(corpus.REGISTERS))
    p.add_argument("--clips", type=int, default=20)
    p.add_argument("--seed", type=int, default=2024)
    args = p.parse_args(argv)
    codec = mglab.load(args.model).codec
    rng, hits, n = np.random.default_rng(args.seed), {}, 0
    while n < args.clips:
        clip = corpus.example(rng, 4.0)
        if clip.attributes["register"] != args.register:
            continue
        n += 1
        for name, y in renders(codec, clip).items():
            read = evaluate.measure(y, codec.sample_rate)["register"]            # None: abstained
            hits.setdefault(name, []).append(None if read is None else args.register in read)
    for name, h in hits.items():
        print(f"{name}: {sum(x is True for x in h)} of {len(h)} read {args.register} "
              f"({sum(x is None for x in h)} abstained)")
    return {name: sum(x is True for x in h) for name, h in hits.items()}


if __name__ == "__main__":
    main()
