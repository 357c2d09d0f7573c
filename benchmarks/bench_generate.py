"""Generation speed: mglab fp32, mglab q8 and transformers' ``generate`` on the same weights, in one run.

    .venv/bin/python benchmarks/bench_generate.py [--model DIR] [--steps 500] [--long-steps 1500]

Greedy, guidance 3.0, batch 1, on the musicgen-small-shaped model (built on first use). For each engine:
steps/s over a ``--steps`` generation, the rate over the first and last 100 steps of a ``--long-steps`` one,
time to first audio (the first 1 s streamed chunk, mglab only), model load time (first and second load),
peak RSS of this process so far; plus a memory-bandwidth probe and the bytes of weights each decoder step
reads, to give each rate as a share of its bandwidth bound. Prints a markdown table and writes JSON.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_small_shapes import model_parser  # noqa: E402

import mglab  # noqa: E402


def bandwidth_gbps(size_mb: int = 512, repeats: int = 5) -> float:
    """Read bandwidth of this machine as numpy sees it: best of ``repeats`` sums over a large array."""
    a = np.ones(size_mb * 2**20 // 8)
    best = min(_timed(lambda: a.sum()) for _ in range(repeats))
    return a.nbytes / best / 1e9


def decoder_bytes_per_step(model) -> int:
    """Bytes of decoder weights a step reads: every initializer of the with-past graph, less the embeddings
    (a step gathers K rows of them) and the cross-attention key/value projections (run once, on step 0)."""
    import onnx

    path = model.paths.get("decoder_with_past_model") or model.paths["decoder_model_merged"]
    graph = onnx.load(str(path), load_external_data=False).graph
    total = 0
    for init in graph.initializer:
        skip = "embed_tokens" in init.name or "encoder_attn.k_proj" in init.name or "encoder_attn.v_proj" in init.name
        if not skip:
            total += int(np.prod(init.dims)) * onnx.helper.tensor_dtype_to_np_dtype(init.data_type).itemsize
    return total


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def step_times_mglab(model, steps: int) -> list[float]:
    """Wall time of each decoding step (a hook on the last hook point of a step stamps the clock)."""
    stamps = [time.perf_counter()]
    model.generate("lofi piano", max_new_tokens=steps, do_sample=False, guidance_scale=3.0,
                   hooks=[("delay.hook_tokens", lambda v, h: stamps.append(time.perf_counter()))])
    return list(np.diff(stamps))


def step_times_transformers(torch_model, ids, mask, steps: int) -> list[float]:
    import torch
    from transformers import LogitsProcessor, LogitsProcessorList

    stamps = [time.perf_counter()]

    class Stamp(LogitsProcessor):
        def __call__(self, input_ids, scores):
            stamps.append(time.perf_counter())
            return scores

    with torch.no_grad():
        torch_model.generate(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                             max_new_tokens=steps, do_sample=False, guidance_scale=3.0,
                             logits_processor=LogitsProcessorList([Stamp()]))
    return list(np.diff(stamps))


def rates(times: list[float]) -> dict:
    return {"steps_per_s": len(times) / sum(times), "first_100": 100 / sum(times[:100]),
            "last_100": 100 / sum(times[-100:])}


def main(argv=None) -> dict:
    parser = model_parser(__doc__, "bench_generate.json")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--long-steps", type=int, default=1500)
    parser.add_argument("--skip-transformers", action="store_true")
    args = parser.parse_args(argv)
    if args.model is None:
        from build_small_shapes import ensure
        args.model = ensure()

    result = {"model": str(args.model), "decoder": args.decoder, "steps": args.steps, "long_steps": args.long_steps,
              "bandwidth_gbps": bandwidth_gbps(), "engines": {}}
    for dtype in ["fp32", "q8"]:
        loads = [_timed(lambda: mglab.load(args.model, dtype=dtype, decoder=args.decoder)) for _ in range(2)]
        model = mglab.load(args.model, dtype=dtype, decoder=args.decoder)
        step_times_mglab(model, 8)                                          # warm up
        t = time.perf_counter()
        next(model.stream("lofi piano", duration=10, chunk_duration=1.0, do_sample=False))
        first_audio = time.perf_counter() - t
        short = rates(step_times_mglab(model, args.steps))
        long = rates(step_times_mglab(model, args.long_steps))
        per_step = decoder_bytes_per_step(model)
        bound = result["bandwidth_gbps"] * 1e9 / per_step
        result["engines"][f"mglab {dtype}"] = {
            "steps_per_s": short["steps_per_s"], "first_100": long["first_100"], "last_100": long["last_100"],
            "time_to_first_audio_s": first_audio, "load_s": loads, "weight_bytes_per_step": per_step,
            "bandwidth_bound_steps_per_s": bound, "share_of_bound": short["steps_per_s"] / bound,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        del model
    if not args.skip_transformers:
        import torch
        from transformers import MusicgenForConditionalGeneration

        torch.set_num_threads(2)
        t = time.perf_counter()
        torch_model = MusicgenForConditionalGeneration.from_pretrained(Path(args.model) / "pytorch").eval()
        load = time.perf_counter() - t
        ids, mask = mglab.load(args.model, dtype="q8").text.tokenize(["lofi piano"])
        step_times_transformers(torch_model, ids, mask, 8)
        short = rates(step_times_transformers(torch_model, ids, mask, args.steps))
        long = rates(step_times_transformers(torch_model, ids, mask, args.long_steps))
        result["engines"]["transformers fp32"] = {
            "steps_per_s": short["steps_per_s"], "first_100": long["first_100"], "last_100": long["last_100"],
            "load_s": [load], "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}

    print(f"memory bandwidth (numpy read): {result['bandwidth_gbps']:.1f} GB/s\n")
    print(f"| engine | steps/s ({args.steps}) | first 100 | last 100 (of {args.long_steps}) | share of bound | "
          "first audio (s) | load (s) |")
    print("|---|---|---|---|---|---|---|")
    for name, e in result["engines"].items():
        share = f"{100 * e['share_of_bound']:.0f}%" if "share_of_bound" in e else "-"
        ttfa = f"{e['time_to_first_audio_s']:.2f}" if "time_to_first_audio_s" in e else "-"
        print(f"| {name} | {e['steps_per_s']:.1f} | {e['first_100']:.1f} | {e['last_100']:.1f} | {share} | {ttfa} | "
              f"{' / '.join(f'{x:.1f}' for x in e['load_s'])} |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
