"""Hook overhead and activation-cache memory, on musicgen-small shapes (or any model folder).

    .venv/bin/python benchmarks/bench_hooks.py [--model DIR] [--steps 100] [--repeats 5]

Measures, in one run on the same weights and threads:

* ``bare``: a minimal greedy + guidance decoding loop with no hook machinery at all (the baseline);
* ``generate``: ``MusicGen.generate`` with no hook attached (target: within 3% of ``bare``);
* ``read-only hook``: ``generate`` with a read-only hook on every logits/tokens point;
* ``read resid_post``: ``generate`` reading ``resid_post`` of every layer (the residual graph rewrite, in-place
  cache; target: at most 25% over ``bare``);
* ``steer one layer``: ``generate`` adding a vector to one layer's ``resid_post`` (every step runs twice);
* the memory of ``run_with_cache`` capturing every key/value hook for 500 steps (10 s of audio), and that the
  attention-probability graph rewrite runs on this model.

Runs are interleaved (bare, generate, hooked, bare, ...) and the median is reported. Prints a markdown table
and writes JSON (``--json``, default ``reports/bench_hooks.json``).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_small_shapes import load_model, model_parser  # noqa: E402
from common import markdown_table, timed, write_json  # noqa: E402

from mglab.decoding import conditioning, guidance, patterns, sampling  # noqa: E402


def bare_loop(model, prompt: str, steps: int, scale: float = 3.0) -> np.ndarray:
    """Text to audio with nothing but the algorithm (greedy, guided): the baseline for hook overhead."""
    c, k = model.config, model.config.num_codebooks
    ids, mask = model.text.tokenize([prompt])                                   # [1, n]
    hidden, mask = guidance.null_condition(model.text.encode(ids, mask), mask)  # [2, n, d], [2, n]
    pattern = patterns.build_delay_pattern(k, steps + 1, c.decoder_start_token_id, c.delays)   # [K, L]
    tokens = np.full((1, k, steps + 1), c.decoder_start_token_id, dtype=np.int64)        # [1, K, L]
    cache = None
    for t in range(steps):
        x = conditioning.to_rows(tokens[:, :, t], 2)                          # [2K, 1]
        logits, cache, _ = model.decoder.step(x, hidden, mask, cache, capacity=steps)   # [2K, V]
        cond, uncond = conditioning.from_rows(logits, 1, k)                   # [1, K, V]
        nxt = sampling.greedy(guidance.guide(cond, uncond, scale))             # [1, K]
        tokens[:, :, t + 1] = np.where(pattern[:, t + 1] == patterns.PREDICT, nxt, pattern[:, t + 1])
    model.codec.decode(patterns.undelay(tokens, c.delays))                        # [1, C, samples]
    return tokens


def main(argv=None) -> dict:
    parser = model_parser(__doc__, "bench_hooks.json")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cache-steps", type=int, default=500)
    args = parser.parse_args(argv)
    model = load_model(args)
    prompt, kw = "lofi piano", dict(max_new_tokens=args.steps, do_sample=False, guidance_scale=3.0)
    read_only = [(lambda n: n.startswith(("guidance.", "sampler.", "delay.")), lambda v, h: None)]
    resid_read = [(lambda n: n.endswith("hook_resid_post"), lambda v, h: None)]
    vec = np.full(model.config.hidden_size, 0.01, dtype=np.float32)
    steer = [(f"decoder.layers.{model.config.num_layers // 2}.hook_resid_post", lambda v, h: v + vec)]
    plain = model.generate(prompt, **kw).tokens
    np.testing.assert_array_equal(bare_loop(model, prompt, args.steps), plain)
    np.testing.assert_array_equal(model.generate(prompt, hooks=resid_read, **kw).tokens, plain)

    runs = {"bare": lambda: bare_loop(model, prompt, args.steps),
            "generate": lambda: model.generate(prompt, **kw),
            "read-only hook": lambda: model.generate(prompt, hooks=read_only, **kw),
            "read resid_post": lambda: model.generate(prompt, hooks=resid_read, **kw),
            "steer one layer": lambda: model.generate(prompt, hooks=steer, **kw)}
    times = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            times[name].append(timed(fn))
    median = {name: statistics.median(ts) for name, ts in times.items()}

    kv = lambda n: n.endswith(("hook_key", "hook_value"))  # noqa: E731
    t = time.perf_counter()
    _, cache = model.run_with_cache(prompt, names_filter=kv, max_new_tokens=args.cache_steps, do_sample=False)
    kv_seconds = time.perf_counter() - t
    _, attn = model.run_with_cache(prompt, names_filter=lambda n: n.endswith("_attn"), max_new_tokens=8,
                                   do_sample=False)
    row_sums = attn["decoder.layers.0.hook_cross_attn"][:, :1].sum(-1)
    result = {
        "model": str(args.model), "dtype": args.dtype, "decoder": args.decoder, "steps": args.steps,
        "repeats": args.repeats, "threads": os.cpu_count(),
        "steps_per_s": {name: args.steps / m for name, m in median.items()},
        "overhead_vs_bare": {name: median[name] / median["bare"] - 1 for name in runs},
        "kv_cache_steps": args.cache_steps, "kv_cache_mib": cache.nbytes / 2**20, "kv_cache_seconds": kv_seconds,
        "attention_hook_points": len(attn), "attention_rows_sum_to_one": bool(np.allclose(row_sums, 1, atol=1e-4)),
    }
    rows = [[name, f"{result['steps_per_s'][name]:.1f}", f"{100 * result['overhead_vs_bare'][name]:+.1f}%"]
            for name in runs]
    print(markdown_table([f"run ({args.dtype}, {args.decoder}, {args.steps} steps, median of {args.repeats})",
                          "steps/s", "vs bare"], rows))
    print(f"\nKV cache of every layer for {args.cache_steps} steps: {result['kv_cache_mib']:.0f} MiB "
          f"({kv_seconds:.1f} s); attention rewrite: {len(attn)} hook points, rows sum to 1: "
          f"{result['attention_rows_sum_to_one']}")
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
