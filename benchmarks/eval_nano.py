"""Does nano-musicgen follow its prompts? Adherence per attribute at guidance 0, 1 and 3, and the ceiling.

    .venv/bin/python benchmarks/eval_nano.py [--prompts 96] [--seeds 2] [--duration 4] [--fit]

Held-out prompts (drawn from the corpus grammar with a seed the training never used), ``--seeds`` seeds each,
default sampling. Half the prompts use attribute combinations the training never saw (``corpus.HELD_OUT``),
reported separately. The ceiling is the evaluator on the corpus's own ground-truth renderings (the codes
the grammar wrote, through the same synthesizer). ``--fit`` first refits the instrument classifier
(``mglab/instruments.json``) on ground-truth renderings drawn with another seed. Prints markdown tables and
writes JSON.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, write_json  # noqa: E402

import mglab  # noqa: E402
from mglab import corpus, evaluate, synth  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ATTRS = ("register", "tempo", "key", "mode", "dynamics", "instrument")
GUIDANCE = (0.0, 1.0, 3.0)


def render(model, codes: np.ndarray) -> np.ndarray:
    return model.codec.decode(codes[None])[0, 0]                              # [samples]


def _features(task):
    """Ground-truth rendering of one clip -> (instrument features, instrument)."""
    seed, seconds = task
    clip = corpus.example(np.random.default_rng(seed), seconds)
    full = render(_MODEL["model"], clip.codes)
    y = evaluate._mono(full, synth.SAMPLE_RATE)
    midi, onsets = evaluate.pitch_track(y), evaluate.onset_times(y)
    return evaluate.instrument_features(y, midi, onsets, full, synth.SAMPLE_RATE), clip.attributes["instrument"]


def fit(pool, count: int, seed: int, seconds: float) -> float:
    """Refit the instrument classifier on ``count`` renderings; its accuracy on a held-out half first."""
    examples = pool.map(_features, [(seed + i, seconds) for i in range(count)])
    evaluate.fit_instruments(examples[: count // 2])
    hits = [evaluate.classify_instrument(f) == n for f, n in examples[count // 2:]]
    evaluate.fit_instruments(examples)
    return float(np.mean(hits))


def score(rows: list[dict]) -> dict:
    """Share of hits per attribute over the rows that asked for it."""
    out = {}
    for a in ATTRS:
        hits = [r["hits"][a] for r in rows if r["hits"].get(a) is not None]
        out[a] = (float(np.mean(hits)), len(hits)) if hits else (float("nan"), 0)
    return out


def _ceiling(clip) -> dict:
    asked = {k: v for k, v in clip.attributes.items() if k != "figure"}
    return {"hits": evaluate.adherence(asked, render(_MODEL["model"], clip.codes), synth.SAMPLE_RATE)}


_MODEL = {}


def _load(path: str, threads: int) -> None:
    import onnxruntime  # noqa: F401  (the sessions take ORT's default thread count per process)

    _MODEL["model"] = mglab.load(path)


def _run(task) -> list[dict]:
    """One prompt at one guidance scale, every seed: generate, then measure each clip."""
    g, i, prompt, said, held_out, seeds, duration = task
    model = _MODEL["model"]
    gen = model.generate([prompt] * seeds, duration=duration, guidance_scale=g, seed=list(range(seeds)))
    return [{"guidance": g, "held_out": held_out, "prompt": prompt, "seed": s,
             "hits": evaluate.adherence(said, gen.audio[s, 0], gen.sample_rate)} for s in range(seeds)]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "data" / "models" / "nano-musicgen")
    parser.add_argument("--prompts", type=int, default=96)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--fit", action="store_true", help="refit the instrument classifier first")
    parser.add_argument("--workers", type=int, default=2, help="processes generating and measuring")
    parser.add_argument("--json", type=Path, default=ROOT / "reports" / "eval_nano.json")
    args = parser.parse_args(argv)
    import multiprocessing

    result = {"model": str(args.model), "prompts": args.prompts, "seeds": args.seeds, "duration": args.duration}
    rng = np.random.default_rng(98765)                                         # never used by training
    clips = [corpus.example(rng, args.duration, held_out=i % 2 == 1) for i in range(args.prompts)]
    tasks = [(g, i, c.prompt, c.said, bool(i % 2), args.seeds, args.duration)
             for g in GUIDANCE for i, c in enumerate(clips)]
    t0 = time.time()
    with multiprocessing.get_context("spawn").Pool(args.workers, _load, (str(args.model), 1)) as pool:
        if args.fit:
            result["instrument_fit_accuracy"] = fit(pool, 240, seed=1_000_000, seconds=args.duration)
            print(f"instrument classifier refitted: {100 * result['instrument_fit_accuracy']:.1f}% on held-out "
                  "renderings (fitted on the other half, then on all)", flush=True)
        result["ceiling"] = score(pool.map(_ceiling, clips))
        rows = [r for rows_ in pool.map(_run, tasks, chunksize=4) for r in rows_]
    result["seconds"] = time.time() - t0
    result["rows"] = rows
    table = defaultdict(dict)
    for g in GUIDANCE:
        for part, sel in (("all", lambda r: True), ("seen", lambda r: not r["held_out"]),
                          ("held-out", lambda r: r["held_out"])):
            table[f"guidance {g:g} ({part})"] = score([r for r in rows if r["guidance"] == g and sel(r)])
    table["ceiling (ground truth)"] = result["ceiling"]
    result["table"] = table
    print(markdown_table(["run", *ATTRS],
                         [[name, *(f"{100 * v[a][0]:.0f}% ({v[a][1]})" for a in ATTRS)] for name, v in table.items()]))
    print(f"\n{len(rows)} generations of {args.duration:g} s evaluated in {result['seconds'] / 60:.1f} min")
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
