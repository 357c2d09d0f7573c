"""Does nano-melody play the melody it is given, on the instrument the text asks for?

    .venv/bin/python benchmarks/eval_melody.py [--model data/models/nano-melody] [--prompts 96] [--seeds 2]

eval_nano.py's held-out prompts (the same seed: half with attribute combinations never seen in training), each
given the melody of another corpus clip (drawn with a seed the training never used, rendered by the model's
codec), ``--seeds`` seeds, 4 s, default sampling. Measured from the audio:

- ``chroma``: audiocraft's chroma cosine (:func:`mglab.audio.chroma.chroma_cosine`) of the clip against the given
  melody, at several guidance scales, and at guidance 3 with no melody (the same prompts and seeds);
- the prompt's attributes (:func:`mglab.audio.evaluate.adherence`), the instrument above all (the melody has its
  own pitch classes and rhythm: key, mode and tempo words may contradict it);
- where the prompt names a key whose scale is not the melody's (key and mode as pitch-class sets: C major and
  A minor agree): whether the clip's key and mode are the melody's or the prompt's.

Prints markdown tables, writes JSON, and with ``--card`` rewrites the model card's scores.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, process_pool, write_json  # noqa: E402
from eval_nano import _MODEL, _load, combination, held_out_clips  # noqa: E402

from mglab.audio import evaluate, vocabulary  # noqa: E402
from mglab.audio.chroma import chroma_cosine  # noqa: E402
from mglab.nano import corpus  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GUIDANCE = (1.0, 3.0, 5.0)
MELODY_SEED = 424242                                    # the melodies' clips: a seed no training draws
ATTRS = ("register", "tempo", "key+mode", "dynamics", "instrument")
def melodies(count: int, seconds: float) -> list:
    """``count`` corpus clips (their codes, attributes and notes) whose renderings are the melodies given."""
    rng = np.random.default_rng(MELODY_SEED)
    return [corpus.example(rng, seconds) for _ in range(count)]


def scale(attributes: dict) -> frozenset:
    """The pitch classes of a clip's key and mode (C major and A minor are the same set: no contradiction)."""
    tonic = corpus.KEYS[attributes["key"]]
    return frozenset((tonic + step) % 12 for step in vocabulary.MODES[attributes["mode"]])


def _both(hits) -> bool | None:
    return None if hits["key"] is None or hits["mode"] is None else bool(hits["key"] and hits["mode"])


def _run(task) -> list[dict]:
    """One prompt, one guidance scale, with or without its melody, every seed: generate, then measure."""
    g, with_melody, prompt, said, attributes, combo, melody_clip, seeds, duration = task
    model = _MODEL["model"]
    line = model.codec.decode(melody_clip.codes[None])[0]                       # [1, samples]
    gen = model.generate([prompt] * seeds, duration=duration, guidance_scale=g, seed=list(range(seeds)),
                         melody=[line] * seeds if with_melody else None)
    rows = []
    own = {k: melody_clip.attributes[k] for k in ("key", "mode")}
    asked = {k: attributes[k] for k in ("key", "mode")}
    for s in range(seeds):
        audio = gen.audio[s, 0]                                                 # [samples]
        measured = evaluate.measure(audio, gen.sample_rate)
        hits = evaluate.adherence(said, audio, gen.sample_rate, measured=measured)
        row = {"guidance": g, "melody": with_melody, "prompt": prompt, "seed": s, "held_out": combo is not None,
               "chroma": chroma_cosine(line[0], audio, gen.sample_rate), "hits": dict(hits),
               "abstained": hits.abstained}
        if "key" in said and scale(own) != scale(asked):                        # the prompt's key is not the line's
            row["contradicted"] = {
                "melody_key": _both(evaluate.adherence(own, audio, gen.sample_rate, measured=measured)),
                "prompt_key": _both(evaluate.adherence(asked, audio, gen.sample_rate, measured=measured))}
        rows.append(row)
    return rows


def share(values) -> tuple[float, int]:
    values = [v for v in values if v is not None]
    return (float(np.mean(values)), len(values)) if values else (float("nan"), 0)


def summarize(rows: list[dict]) -> dict:
    """Per run (guidance, melody or not): mean chroma cosine, the attributes' adherence, the contradicted keys."""
    table = {}
    for g in sorted({r["guidance"] for r in rows}):
        for with_melody in (True, False):
            sel = [r for r in rows if r["guidance"] == g and r["melody"] == with_melody]
            if not sel:
                continue
            out = {"chroma": (float(np.mean([r["chroma"] for r in sel])), len(sel))}
            for a in ATTRS:
                if a == "key+mode":
                    out[a] = share([r["hits"]["key"] and r["hits"]["mode"] for r in sel
                                    if r["hits"].get("key") is not None and r["hits"].get("mode") is not None])
                else:
                    out[a] = share([r["hits"].get(a) for r in sel])
            out["instrument (held-out)"] = share([r["hits"].get("instrument") for r in sel if r["held_out"]])
            contra = [r["contradicted"] for r in sel if "contradicted" in r]
            out["melody's key"] = share([c["melody_key"] for c in contra])
            out["prompt's key"] = share([c["prompt_key"] for c in contra])
            table[f"guidance {g:g}, {'melody' if with_melody else 'no melody'}"] = out
    return table


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "data" / "models" / "nano-melody")
    parser.add_argument("--prompts", type=int, default=96)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path, default=ROOT / "reports" / "eval_melody.json")
    parser.add_argument("--card", action="store_true", help="rewrite the model card's scores")
    args = parser.parse_args(argv)
    clips = held_out_clips(args.prompts, args.duration)
    lines = melodies(args.prompts, args.duration)
    runs = [(g, True) for g in GUIDANCE] + [(3.0, False)]
    tasks = [(g, m, c.prompt, c.said, c.attributes, combination(c.attributes), line, args.seeds, args.duration)
             for g, m in runs for c, line in zip(clips, lines)]
    t0 = time.time()
    with process_pool(args.workers, _load, (str(args.model),)) as pool:
        rows = [r for rows_ in pool.map(_run, tasks, chunksize=4) for r in rows_]
    table = summarize(rows)
    result = {"model": str(args.model), "prompts": args.prompts, "seeds": args.seeds, "duration": args.duration,
              "seconds": time.time() - t0, "table": table, "rows": rows}
    columns = ["chroma", *ATTRS, "instrument (held-out)", "melody's key", "prompt's key"]
    print(markdown_table(["run", *columns], [[name, *(_cell(v[c], c == "chroma") for c in columns)]
                                             for name, v in table.items()]))
    print(f"\n{len(rows)} clips of {args.duration:g} s in {result['seconds'] / 60:.1f} min")
    write_json(args.json, result)
    if args.card:
        import melody_card

        melody_card.write(args.model, result, _cell, columns)
    return result


def _cell(value, plain: bool = False) -> str:
    v, n = value
    if n == 0:
        return "-"
    return f"{v:.2f} ({n})" if plain else f"{100 * v:.0f}% ({n})"


if __name__ == "__main__":
    main()
