"""Controlled runs for composition: the guided stage of ``scripts/train_nano.py`` run again on a trained model,
once per variant of its prompts, each measured on held-out and seen combinations at guidance 3.

    .venv/bin/python benchmarks/compose_nano.py --variants plain all-said [--prompts 192]

``--diagnose PROMPT`` instead measures why a combination fails: at the first note change of each clip generated
at guidance 3, the probability the conditional, the unconditional and the guided logits give to a note
outside the register the prompt asks for (``leave_register``).

Every variant starts from the same weights (``--start``, default the bundled nano-musicgen), trains the same
steps from the same seed and differs only in its prompts (``VARIANTS``: the share of prompts naming each
attribute) or its smoothing. The floor variants draw the same clips as ``plain``; the wording variants draw the
same first attributes, but the prompt's words use the random stream, so later clips differ.
Each result is ``eval_nano.py --guidance 3`` on ``--prompts`` prompts x 2 seeds. Writes ``reports/compose_nano.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import eval_nano  # noqa: E402
import numpy as np  # noqa: E402
import train_nano  # noqa: E402
from common import write_json  # noqa: E402

import mglab  # noqa: E402
from mglab.nano import corpus, synth  # noqa: E402

VARIANTS = {
    "start": "untrained",                                   # the starting model itself, no stage run
    "plain": None,                                          # corpus.SAY, as the guided stage trains now
    "all-said": {k: 1.0 for k in corpus.SAY},               # every attribute named: a word always decides
    "half-said": {k: 0.5 for k in corpus.SAY},              # attribute dropout: each word acts on its own
    "uncond-floor-0.02": 0.02,                              # the unconditional logits smoothed 0.02 (its floor)
    "uncond-floor-0.05": 0.05,
}
GAP_ATTRS = ("register", "tempo", "key+mode", "instrument")


def run_variant(name: str, start: Path, out: Path, steps: int, threads: int) -> dict:
    """The guided stage with ``VARIANTS[name]`` from ``start``'s PyTorch weights, laid out at ``out``."""
    import torch
    from transformers import MusicgenForConditionalGeneration

    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    tok = train_nano.build_tokenizer()
    model = MusicgenForConditionalGeneration.from_pretrained(start / "pytorch")
    model.config.decoder._attn_implementation = "eager"
    v = VARIANTS[name]
    say, smoothing = (None, v) if isinstance(v, float) else (v, train_nano.LABEL_SMOOTHING)
    log = train_nano.guided_stage(model, tok, steps, 24, 0, say=say, uncond_smoothing=smoothing)
    gen = model.generation_config
    gen.top_k, gen.guidance_scale = 50, 3.0
    train_nano.lay_out(model, tok, out, {"variant": name, "start": str(start), "guided_stage": log})
    return log


def leave_register(model, prompt: str, seeds: int = 16, guidance: float = 3.0) -> list[dict]:
    """Per seed, at the first frame where codebook 0 changes note: the mass that the conditional (``cond``), the
    unconditional (``uncond``) and the guided (``guided``) distributions put on notes outside ``prompt``'s
    register (``corpus.REGISTERS``), the frame, and the notes played."""
    register = corpus.attributes(prompt)[0]["register"]
    lo, hi = corpus.REGISTERS[register]
    inside = np.zeros(synth.VOCAB, bool)
    inside[[synth.midi_to_token(m) for m in range(lo, hi + 1)]] = True
    inside[0] = True                                                    # a rest is in no register
    seen = {"c": [], "u": []}

    def keep(which):
        def hook(x, step):
            seen[which].append(x[:, 0].copy())                         # [B, V] codebook 0
            return x
        return hook

    with model.hooks([("guidance.hook_cond_logits", keep("c")), ("guidance.hook_uncond_logits", keep("u"))]):
        gen = model.generate([prompt] * seeds, duration=4.0, guidance_scale=guidance, seed=list(range(seeds)))
    cond, uncond = np.stack(seen["c"]), np.stack(seen["u"])            # [S, B, V]: step s = codebook 0's frame s
    out = []
    for b in range(seeds):
        notes = np.asarray(gen.codes[b, 0])                              # [T]
        change = np.flatnonzero(notes[1:] != notes[:-1]) + 1
        if not change.size:
            continue
        f = int(change[0])
        c, u = _log_softmax(cond[f, b]), _log_softmax(uncond[f, b])     # [V] each
        g = _log_softmax(u + guidance * (c - u))
        out.append({"seed": b, "frame": f, **{k: float(np.exp(x[~inside]).sum()) for k, x in
                                              (("cond", c), ("uncond", u), ("guided", g))},
                    "notes": [int(n) for n in notes[np.r_[0, change]]][:12]})
    return out


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def gaps(table: dict) -> dict:
    """Seen minus held-out, points, per attribute of :data:`GAP_ATTRS`."""
    seen, held = table["guidance 3 (seen)"], table["guidance 3 (held-out)"]
    return {a: round(100 * (seen[a][0] - held[a][0]), 1) for a in GAP_ATTRS}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--start", type=Path, default=ROOT / "data" / "models" / "nano-musicgen")
    parser.add_argument("--steps", type=int, default=train_nano.GUIDED_STEPS)
    parser.add_argument("--prompts", type=int, default=192)
    parser.add_argument("--work", type=Path, default=Path("/tmp/compose_nano"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=ROOT / "reports" / "compose_nano.json")
    parser.add_argument("--diagnose", default=None, metavar="PROMPT", help="measure leave_register instead")
    args = parser.parse_args(argv)
    if args.diagnose:
        rows = leave_register(mglab.load(args.start), args.diagnose)
        for r in rows:
            print(r)
        mean = {k: float(np.mean([r[k] for r in rows])) for k in ("cond", "uncond", "guided")}
        print("mean mass outside the register at the first note change:", mean)
        return {"prompt": args.diagnose, "rows": rows, "mean": mean}
    result = {"start": str(args.start), "steps": args.steps, "prompts": args.prompts, "variants": {}}
    for name in args.variants:
        t0 = time.time()
        model = args.start if name == "start" else args.work / name
        log = {"final_loss": None} if name == "start" else run_variant(name, args.start, model, args.steps,
                                                                         args.threads)
        ev = eval_nano.main(["--model", str(model), "--guidance", "3", "--prompts", str(args.prompts),
                             "--no-card", "--json", str(args.work / f"{name}.json")])
        table = {k: v for k, v in ev["table"].items() if k.startswith("guidance")}
        result["variants"][name] = {"table": table, "gaps": gaps(table), "final_loss": log["final_loss"],
                                    "seconds": time.time() - t0}
        print(name, "seen - held-out (points):", result["variants"][name]["gaps"], flush=True)
        write_json(args.json, result)
    print(json.dumps({k: v["gaps"] for k, v in result["variants"].items()}, indent=1))
    return result


if __name__ == "__main__":
    main()
