"""A rewrite of ``mglab/onnx/fuse.py`` against the same graph without it, in one process.

    .venv/bin/python benchmarks/bench_fuse.py [--model DIR] [--steps 100] [--rounds 5] [--rewrite norms|concats]

``--rewrite norms`` (the default): the fused residual norms; ``concats``: the single-input ``Concat`` copies removed.

musicgen-small-shaped model (built on first use), q8 split pair with the in-place KV cache, greedy, guidance 3,
2 threads. Two models are loaded side by side: mglab as it is (with the rewrite: each residual add and its layer
norm one ``SkipLayerNormalization``, or no single-input ``Concat`` copies) and the in-place graph built without
it (its own cache entry). Batches 1
and 8 are timed round after round, the two graphs alternating within each round, so a machine's drift touches
both alike; a step's decoder time is split out by hook timestamps as in ``bench_batch.py``. Prints the decoder
milliseconds a step of each run and their means, and the greedy tokens' agreement of the two graphs (random
weights give near-ties, so one changed token changes what follows). Writes JSON.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_batch import PROMPTS, split_times  # noqa: E402
from build_small_shapes import ensure  # noqa: E402
from common import markdown_table, write_json  # noqa: E402

import mglab  # noqa: E402
from mglab.onnx import fuse, inplace_kv  # noqa: E402

PARTS = ("decoder_model", "decoder_with_past_model")


REWRITES = {"norms": ("skip_layer_norm", "-unfused"), "concats": ("single_input_concats", "-with-concats")}


@contextmanager
def unfused(rewrite: str = "norms"):
    """The in-place graph built and cached without ``rewrite`` (:data:`REWRITES`), while the context lasts."""
    name, suffix = REWRITES[rewrite]
    tag, skip = inplace_kv.TAG, getattr(fuse, name)
    inplace_kv.TAG = tag + suffix
    setattr(fuse, name, lambda graph: 0)
    try:
        yield
    finally:
        inplace_kv.TAG = tag
        setattr(fuse, name, skip)


def load(path: Path, fused: bool, rewrite: str = "norms"):
    """The q8 split pair, warmed up (its sessions made), with ``rewrite`` or without it."""
    def make():
        model = mglab.load(path, dtype={p: "q8" for p in PARTS}, decoder="split")
        model.generate(PROMPTS[:1], max_new_tokens=8, do_sample=False)                 # builds and loads the graph
        return model
    if fused:
        return make()
    with unfused(rewrite):
        return make()


def main(argv=None) -> dict:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rewrite", choices=sorted(REWRITES), default="norms")
    parser.add_argument("--json", type=Path, default=None, help="default reports/bench_fuse_<rewrite>.json")
    args = parser.parse_args(argv)
    args.json = args.json or Path("reports") / f"bench_fuse_{args.rewrite}.json"
    path = args.model or ensure()
    models = {"plain": load(path, False, args.rewrite), "fused": load(path, True, args.rewrite)}
    tokens = {k: m.generate(PROMPTS[:2], max_new_tokens=args.steps, do_sample=False, guidance_scale=3.0).tokens
              for k, m in models.items()}
    agree = float(np.mean(tokens["plain"] == tokens["fused"]))
    runs = {(k, b): [] for b in (1, 8) for k in models}
    for r in range(args.rounds):
        for batch in (1, 8):
            for name in (("plain", "fused") if r % 2 == 0 else ("fused", "plain")):     # alternate who goes first
                _, decoder, _ = split_times(models[name], batch, args.steps)
                runs[name, batch].append(1e3 * decoder)
                print(f"round {r} batch {batch} {name}: {1e3 * decoder:.1f} ms", flush=True)
    rows = []
    for batch in (1, 8):
        plain, fused = np.mean(runs["plain", batch]), np.mean(runs["fused", batch])
        rows.append([batch, f"{plain:.1f}", f"{fused:.1f}", f"{fused / plain - 1:+.1%}",
                     " / ".join(f"{p:.1f}-{f:.1f}" for p, f in zip(runs["plain", batch], runs["fused", batch]))])
    print(markdown_table(["batch", f"without {args.rewrite} ms/step", f"with {args.rewrite} ms/step", "change",
                          "runs (without-with)"], rows))
    print(f"greedy tokens equal at {agree:.0%} of positions (2 prompts, {args.steps} steps)")
    result = {"rewrite": args.rewrite, "steps": args.steps, "rounds": args.rounds, "token_agreement": agree,
              "runs": {f"{k} x{b}": v for (k, b), v in runs.items()}}
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
