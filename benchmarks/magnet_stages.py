"""Which stage of a masked model loses an attribute: corpus clips with their codebooks >= k decoded by the model.

    .venv/bin/python benchmarks/magnet_stages.py [--model data/models/nano-magnet ...] [--prompts 96] [--seeds 2]
                                                 [--temperature T]

MAGNeT decodes codebook 0 first, then 1, 2 and 3, each stage given the codebooks below it. The synthesizer
codec's codebooks are attributes (:mod:`mglab.nano.synth`: 0 pitch, 1 strikes and each note's age, 2 timbre,
3 vibrato and detune), so handing the model a corpus clip's own lower codebooks and letting it decode the rest
(``vamp`` with ``masks.codebooks(k)``, the clip's own prompt) says which stage loses what::

    kept (ground truth)   decoded by the model
    codebooks 0-3         none: the ground truth's rendering, the ceiling
    codebooks 0-2         3
    codebooks 0-1         2, 3
    codebook 0            1, 2, 3
    none                  0, 1, 2, 3: generation from the prompt

The clips are ``eval_nano.py``'s held-out prompts (half with combinations training never saw), 4 s cut to
whole spans of ``span_len`` (3.96 s: MAGNeT decodes whole spans, so every code of a decoded codebook is the
model's), ``--seeds`` seeds each. Adherence to what each prompt says is measured from the audio by
``mglab.audio.evaluate``; beside it, read from the codes: note strikes a second against the ground truth's
(``strikes``, ``truth``), and timbre switches per clip (sounding frames whose codebook-2 instrument differs from
the sounding frame before; the corpus plays one instrument a clip, so the truth has none). Several ``--model``
run in one pool, on the same clips and seeds.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, process_pool, write_json  # noqa: E402
from eval_nano import ATTRS, held_out_clips, score  # noqa: E402

import mglab  # noqa: E402
from mglab.audio import evaluate  # noqa: E402
from mglab.decoding import masks  # noqa: E402
from mglab.masked_model import is_masked  # noqa: E402
from mglab.nano import synth  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KEPT = {4: "codebooks 0-3 (truth)", 3: "codebooks 0-2", 2: "codebooks 0-1", 1: "codebook 0", 0: "none"}
_MODELS = {}


def strikes_per_second(codes: np.ndarray, frame_rate: float = 50.0) -> float:
    """Note strikes a second in codes ``[4, T]``: sounding frames (codebook 0 not a rest) whose codebook-1 stage
    is the strike."""
    struck = synth.is_strike(codes[1]) & (codes[0] > 0)                     # [T]
    return float(struck.sum() * frame_rate / codes.shape[-1])


def timbre_switches(codes: np.ndarray) -> int:
    """Sounding frames whose instrument (codebook 2 modulo 6) differs from the sounding frame before."""
    inst = codes[2][codes[0] > 0] % len(synth.INSTRUMENTS)                    # [sounding frames]
    return int((np.diff(inst) != 0).sum())


def _settings(path: str, temperature: float | None) -> dict:
    """What a run decodes with: the model's ``subcodes_context`` and the temperature used (given, else its own)."""
    cfg = json.loads((Path(path) / "config.json").read_text())
    return {"context": cfg.get("subcodes_context"),
            "temperature": cfg["generation"]["temperature"] if temperature is None else temperature}


def _load(paths: list[str]) -> None:
    for p in paths:
        _MODELS[p] = mglab.load(p)


def _run(task) -> list[dict]:
    """One clip, one model, one number of kept codebooks, every seed: decode, then measure each clip."""
    path, kept, clip, held_out, seeds, settings = task
    model = _MODELS[path]
    t = clip.codes.shape[-1] // model.config["span_len"] * model.config["span_len"]   # whole spans: all decoded
    source = np.repeat(clip.codes[None, :, :t], seeds, axis=0)                 # [S, 4, T]
    if kept == 4:
        codes, audio = source, model.codec.decode(source)                     # [S, 4, T], [S, 1, samples]
    else:                  # the generation temperature, not the model's vamp block: the rows stand for generation
        kw = {"temperature": model.config["generation"]["temperature"], **settings}
        gen = model.vamp(source, masks.codebooks(kept), clip.prompt, seed=list(range(seeds)), **kw)
        codes, audio = gen.codes, gen.audio
    rows = []
    for s in range(seeds):
        hits = evaluate.adherence(clip.said, audio[s, 0], synth.SAMPLE_RATE)
        rows.append({"model": path, "kept": kept, "held_out": held_out, "prompt": clip.prompt, "seed": s,
                     "hits": dict(hits), "abstained": hits.abstained, "strikes": strikes_per_second(codes[s]),
                     "truth": strikes_per_second(source[s]), "switches": timbre_switches(codes[s])})
    return rows


def table(rows: list[dict]) -> dict:
    """Per model and kept codebooks: :func:`eval_nano.score` of the rows, mean strikes a second (and the truth's),
    mean timbre switches per clip."""
    out = {}
    for path in dict.fromkeys(r["model"] for r in rows):
        for kept, label in KEPT.items():
            chosen = [r for r in rows if r["model"] == path and r["kept"] == kept]
            out[f"{Path(path).name}: {label}"] = {
                **score(chosen), "strikes": float(np.mean([r["strikes"] for r in chosen])),
                "truth": float(np.mean([r["truth"] for r in chosen])),
                "switches": float(np.mean([r["switches"] for r in chosen]))}
    return out


def render(result: dict) -> str:
    return markdown_table(["model: kept", *ATTRS, "strikes/s (truth)", "timbre switches"],
                          [[name, *(f"{100 * v[a][0]:.0f}%" for a in ATTRS), f"{v['strikes']:.2f} ({v['truth']:.2f})",
                            f"{v['switches']:.1f}"] for name, v in result.items()])


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, nargs="+", default=[ROOT / "data" / "models" / "nano-magnet"])
    p.add_argument("--prompts", type=int, default=96)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--temperature", type=float, default=None, help="MAGNeT's starting temperature (default: the "
                   "model's)")
    p.add_argument("--json", type=Path, default=ROOT / "reports" / "magnet_stages.json")
    args = p.parse_args(argv)
    for m in args.model:
        if not (m / "config.json").is_file() or not is_masked(m):
            p.error(f"--model {m}: not a masked model's folder (its config.json says \"decoding\": \"masked\")")
    if args.temperature is not None and not 0 <= args.temperature < float("inf"):
        p.error(f"--temperature {args.temperature}: give a finite number >= 0")
    if min(args.prompts, args.seeds, args.workers) < 1:
        p.error(f"--prompts {args.prompts}, --seeds {args.seeds}, --workers {args.workers}: give at least 1 of each")
    paths = [str(m) for m in args.model]
    clips = held_out_clips(args.prompts, 4.0)
    settings = {} if args.temperature is None else {"temperature": args.temperature}
    tasks = [(path, kept, c, i % 2 == 1, args.seeds, settings) for path in paths for kept in KEPT
             for i, c in enumerate(clips)]
    with process_pool(args.workers, _load, (paths,)) as pool:
        rows = [r for rows_ in pool.map(_run, tasks, chunksize=4) for r in rows_]
    runs = [{"name": Path(m).name, "path": m,
             **_settings(m, args.temperature)} for m in paths]
    result = {"runs": runs, "prompts": args.prompts, "seeds": args.seeds, "settings": settings, "table": table(rows),
              "rows": rows}
    print(render(result["table"]))
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
