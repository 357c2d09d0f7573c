"""Is the played mode in nano-musicgen's residual stream? Linear and MLP probes where no prompt names the key.

    .venv/bin/python benchmarks/probe_mode.py [--clips 1500]

Corpus clips teacher-forced (``activations.record_clips``) whose prompts never name the key or the mode
(``say={"key": 0}``), each clip's mean at every ``resid_post``. Probed (5 folds grouped by clip, the control
task by prompt): the mode by logistic regression and by SynTheory's 512-unit MLP (:func:`mglab.probe.mlp`);
the key; and the mode within each key (12 linear probes, 3 folds). The same two probes on 24 numbers taken
from the notes themselves (each pitch class's share of the sounding time, and the first note's pitch class)
say what a probe can read from the music: the mode is a function of the tonic and the pitch classes played
(A minor and C major share their pitch classes), which no linear probe reads across keys.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import mglab  # noqa: E402
from mglab.inspect import activations  # noqa: E402
from mglab.inspect import probe as pr  # noqa: E402
from mglab.nano import corpus  # noqa: E402


def note_features(clips) -> np.ndarray:
    """``[clips, 24]``: each pitch class's share of the sounding frames, then the first note's class one-hot."""
    out = np.zeros((len(clips), 24))
    for i, c in enumerate(clips):
        for midi, _, frames in c.notes:
            if midi > 0:
                out[i, midi % 12] += frames
        out[i, :12] /= out[i, :12].sum()
        out[i, 12 + next(m for m, _, _ in c.notes if m > 0) % 12] = 1
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=ROOT / "data" / "models" / "nano-musicgen")
    p.add_argument("--clips", type=int, default=1500)
    args = p.parse_args(argv)
    t0 = time.time()
    model = mglab.load(args.model)
    rng = np.random.default_rng(24680)                                   # a seed training never used
    clips = [corpus.example(rng, 4.0, say={"key": 0.0}) for _ in range(args.clips)]
    names = [f"decoder.layers.{i}.hook_resid_post" for i in range(model.config.num_layers)]
    ds = activations.record_clips(model, clips, Path(tempfile.mkdtemp(prefix="probe-mode-")), names,
                                  batch_size=25, every=2)
    t = ds.table("clips")
    assert not t["said"].map(lambda s: "key" in s).any()
    y, g, by, key = (t[c].to_numpy(dtype=object) for c in ("mode", "clip", "prompt", "key"))
    print(f"mode: chance (the larger class's share) {max(np.mean(y == 'major'), np.mean(y == 'minor')):.3f}")
    print("| features | probe | mode | control | key | mode within each key |\n|---|---|---|---|---|---|")
    for label, x in [("the notes (24 numbers)", note_features(clips))] + [(n, np.asarray(ds.clips(n))) for n in names]:
        within = sum(pr.probe(x[key == k], y[key == k], g[key == k], folds=3)["score"] * (key == k).sum()
                     for k in np.unique(key)) / len(key)
        k = pr.probe(x, key, g)["score"]
        for probe_name, make in (("linear", None), ("MLP 512", pr.mlp)):
            r = pr.probe(x, y, g, control_by=by, make=make)
            print(f"| {label} | {probe_name} | {r['score']:.3f} | {r['control']:.3f} | {k:.3f} | {within:.3f} |",
                  flush=True)
    print(f"{args.clips} clips, {(time.time() - t0) / 60:.1f} min")


if __name__ == "__main__":
    main()
