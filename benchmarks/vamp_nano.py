"""Vamping measured on nano-magnet: 6 s clips, the middle 2 s regenerated, measured from the audio.

    .venv/bin/python benchmarks/vamp_nano.py [--model data/models/nano-magnet] [--clips 48]

For each held-out prompt that names an instrument (``eval_nano.py``'s prompt generator), a 6 s source clip is
generated, then its middle 2 s masked (``masks.inpaint(2, 2)``) and regenerated:

- with the clip's own prompt: does the new middle keep the source's key+mode and instrument (the source measured
  on all 6 s, the middle on its 2 s; an attribute the evaluator abstains on is counted apart)?
- with the prompt's instrument word changed (the next of the six instruments): does the middle follow it?
- are the kept 4 s bit-exact (codes), and does the audio join without a click (no sample step in the 20 ms
  around each seam larger than the source clip's own largest step)?
- ``masks.periodic(8, 1)`` variations (one frame in 8 kept): the key kept, and the share of frames that differ.

The ceiling rows measure the source's own middle 2 s against the whole source: how often the evaluator finds the
same key+mode or instrument in 2 s of the very clip, i.e. what "keeps" can reach with this measurement.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, write_json  # noqa: E402

import mglab  # noqa: E402
from mglab.audio import evaluate, vocabulary  # noqa: E402
from mglab.nano import corpus  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SECONDS, MIDDLE = 6.0, (2.0, 4.0)
TARGETS = {"keeps key+mode": 0.9, "keeps instrument": 0.9, "follows the new instrument": 0.8,
           "kept codes bit-exact": 1.0, "no click at the seams": 1.0, "periodic keeps the key": 0.9}


def other_instrument(prompt: str, instrument: str) -> tuple[str, str]:
    """The prompt with its instrument word replaced by the next of the six."""
    names = list(vocabulary.INSTRUMENTS)
    new = names[(names.index(instrument) + 1) % len(names)]
    return prompt.replace(instrument, new), new


def seam_clicks(audio: np.ndarray, source: np.ndarray, sr: int) -> bool:
    """True when a sample step within 10 ms of either seam exceeds the source's largest step anywhere."""
    limit = np.abs(np.diff(source)).max()
    for t in MIDDLE:
        lo, hi = int((t - 0.01) * sr), int((t + 0.01) * sr)
        if np.abs(np.diff(audio[lo:hi])).max() > limit + 1e-6:
            return True
    return False


def middle(audio: np.ndarray, sr: int) -> np.ndarray:
    return audio[int(MIDDLE[0] * sr):int(MIDDLE[1] * sr)]


def same(a, b) -> bool | None:
    return None if a is None or b is None else a == b


def clip_rows(model, prompt: str, instrument: str, seed: int) -> dict:
    source = model.generate(prompt, duration=SECONDS, seed=seed)
    sr, codes, y = source.sample_rate, source.codes, source.audio[0, 0]
    inpaint = mglab.masks.inpaint(MIDDLE[0], SECONDS - MIDDLE[1])
    keep = ~inpaint.resolve(model.num_codebooks, codes.shape[-1], model.frame_rate)           # [K, T]
    own = model.vamp(source, inpaint, seed=seed + 1)
    swapped_prompt, new = other_instrument(prompt, instrument)
    swapped = model.vamp(source, inpaint, swapped_prompt, seed=seed + 1)
    varied = model.vamp(source, mglab.masks.periodic(8, 1), seed=seed + 2)
    src, mid = evaluate.measure(y, sr), evaluate.measure(middle(own.audio[0, 0], sr), sr)
    src_mid = evaluate.measure(middle(y, sr), sr)                # the measurement's ceiling: the source's own middle
    swap_mid = evaluate.measure(middle(swapped.audio[0, 0], sr), sr)
    var = evaluate.measure(varied.audio[0, 0], sr)
    key_mode = lambda m: None if m["key"] is None or m["mode"] is None else (m["key"], m["mode"])   # noqa: E731
    return {"prompt": prompt, "seed": seed,
            "keeps key+mode": same(key_mode(mid), key_mode(src)),
            "keeps instrument": same(mid["instrument"], src["instrument"]),
            "follows the new instrument": same(swap_mid["instrument"], new),
            "kept codes bit-exact": bool((own.codes[0][keep] == codes[0][keep]).all()
                                         and (swapped.codes[0][keep] == codes[0][keep]).all()),
            "no click at the seams": not (seam_clicks(own.audio[0, 0], y, sr)
                                          or seam_clicks(swapped.audio[0, 0], y, sr)),
            "periodic keeps the key": same(key_mode(var), key_mode(src)),
            "ceiling: the source's middle has its key+mode": same(key_mode(src_mid), key_mode(src)),
            "ceiling: the source's middle has its instrument": same(src_mid["instrument"], src["instrument"]),
            "periodic frames changed": float((varied.codes[0] != codes[0]).any(axis=0).mean())}


def summarize(rows: list[dict]) -> dict:
    out = {}
    for name, target in TARGETS.items():
        measured = [r[name] for r in rows if r[name] is not None]
        share = float(np.mean(measured)) if measured else float("nan")
        out[name] = {"share": share, "measured": len(measured), "abstained": len(rows) - len(measured),
                     "target": target, "met": bool(share >= target)}
    for name in ("ceiling: the source's middle has its key+mode", "ceiling: the source's middle has its instrument"):
        measured = [r[name] for r in rows if r[name] is not None]
        out[name] = {"share": float(np.mean(measured)) if measured else float("nan"), "measured": len(measured),
                     "abstained": len(rows) - len(measured), "target": float("nan"), "met": True}
    changed = float(np.mean([r["periodic frames changed"] for r in rows]))
    out["periodic frames changed"] = {"share": changed, "measured": len(rows), "abstained": 0, "target": 0.5,
                                      "met": changed > 0.5}
    return out


def target(v: dict) -> str:
    return "-" if np.isnan(v["target"]) else f">= {100 * v['target']:.0f}%"


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=ROOT / "data" / "models" / "nano-magnet")
    p.add_argument("--clips", type=int, default=48)
    p.add_argument("--json", type=Path, default=ROOT / "reports" / "vamp_nano.json")
    args = p.parse_args(argv)
    model = mglab.load(args.model)
    rng = np.random.default_rng(98765)
    rows = []
    while len(rows) < args.clips:
        clip = corpus.example(rng, SECONDS, held_out=len(rows) % 2 == 1)
        instrument = clip.said.get("instrument")
        if instrument and instrument in clip.prompt:
            rows.append(clip_rows(model, clip.prompt, instrument, seed=len(rows)))
    summary = summarize(rows)
    print(markdown_table(["claim", "share", "measured", "abstained", "target", "met"],
                         [[k, f"{100 * v['share']:.0f}%", v["measured"], v["abstained"],
                           target(v), "yes" if v["met"] else "NO"] for k, v in summary.items()]))
    write_json(args.json, {"model": str(args.model), "clips": args.clips, "summary": summary, "rows": rows})
    return summary


if __name__ == "__main__":
    main()
