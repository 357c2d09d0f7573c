"""Generation speed: mglab fp32, q8 and q4 and transformers' ``generate`` on the same weights, in one run.

    .venv/bin/python benchmarks/bench_generate.py [--model DIR] [--steps 500] [--long-steps 1500]

Greedy, guidance 3.0, batch 1, on the musicgen-small-shaped model (built on first use). For each engine:
steps/s over a ``--steps`` generation, the rate over the first and last 100 steps of a ``--long-steps`` one,
time to first audio (the first 1 s streamed chunk, mglab only), model load time (first load with an empty
``$MGLAB_CACHE`` of the row's own, so it includes the graph rewrite and ONNX Runtime's optimization and owes
nothing to earlier rows; then a second load from that cache),
peak RSS of this process so far. ``mglab q8 concat`` runs the exported, concatenating KV cache as the
baseline of the in-place one. q8 and q4 are made with Xenova's recipe (``scripts/quantize.py``), as the
files users download; q4 exists for the merged decoder only.

Bandwidth bound: the best of two probes (numpy summing 512 MB; ONNX Runtime streaming 1 GB of fp32 weights
through ``[2, 1024] @ [1024, 4096]`` matmuls on this machine's threads) over the bytes a step must read:
every weight of the with-past graph (less the embeddings, of which it gathers K rows, and the cross-attention
key/value projections, run once). The last 100 steps of the long run also read the KV cache, ``2 * layers *
2B * heads * pos * head_dim`` floats, so their bound is given with those bytes added. Prints a markdown table
and writes JSON.
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_small_shapes import model_parser  # noqa: E402
from common import fresh_cache, markdown_table, step_times, step_times_transformers, timed, write_json  # noqa: E402

import mglab  # noqa: E402


def bandwidth_gbps(size_mb: int = 512, repeats: int = 5) -> float:
    """Read bandwidth of this machine as numpy sees it: best of ``repeats`` sums over a large array."""
    a = np.ones(size_mb * 2**20 // 8)
    best = min(timed(lambda: a.sum()) for _ in range(repeats))
    return a.nbytes / best / 1e9


def ort_bandwidth_gbps(total_mb: int = 1024, repeats: int = 10) -> float:
    """Weight-streaming bandwidth ONNX Runtime reaches: ``x [2, 1024]`` times a chain of ``[1024, 4096]`` fp32
    matrices (different ones, 1 GB in all, so no cache helps), best of ``repeats``."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    k, n = 1024, 4096
    count = total_mb * 2**20 // (k * n * 4)
    rng = np.random.default_rng(0)
    nodes, inits = [], []
    for i in range(count):
        inits.append(numpy_helper.from_array(rng.standard_normal((k, n), dtype=np.float32), f"w{i}"))
        nodes += [helper.make_node("MatMul", ["x", f"w{i}"], [f"m{i}"]),
                  helper.make_node("ReduceSum", [f"m{i}"], [f"r{i}"], keepdims=1)]
    nodes.append(helper.make_node("Sum", [f"r{i}" for i in range(count)], ["y"]))
    graph = helper.make_graph(nodes, "probe", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    with tempfile.TemporaryDirectory() as d:
        onnx.save(model, f"{d}/probe.onnx", save_as_external_data=True)
        session = ort.InferenceSession(f"{d}/probe.onnx", providers=["CPUExecutionProvider"])
        x = rng.standard_normal((2, k), dtype=np.float32)
        session.run(None, {"x": x})
        best = min(timed(lambda: session.run(None, {"x": x})) for _ in range(repeats))
    return count * k * n * 4 / best / 1e9


def kv_bytes(model, positions: int, rows: int = 2) -> int:
    """Bytes of self-attention cache a step reads at ``positions`` (keys and values, every layer)."""
    c = model.config
    return 2 * c.num_layers * rows * c.num_heads * positions * c.head_dim * 4


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

    probes = {"numpy_read": bandwidth_gbps(), "onnxruntime_matmul": ort_bandwidth_gbps()}
    result = {"model": str(args.model), "decoder": args.decoder, "steps": args.steps, "long_steps": args.long_steps,
              "bandwidth_probes_gbps": probes, "bandwidth_gbps": max(probes.values()), "engines": {}}
    bandwidth = result["bandwidth_gbps"] * 1e9
    rows_to_run = [("mglab fp32", dict(dtype="fp32", decoder=args.decoder)),
                   ("mglab q8", dict(dtype="q8", decoder=args.decoder)),
                   ("mglab q8 concat", dict(dtype="q8", decoder=args.decoder, kv_cache="concat")),
                   ("mglab q4 (merged)", dict(dtype={"text_encoder": "q8", "decoder_model_merged": "q4"},
                                              decoder="merged"))]
    for name, kw in rows_to_run:
        with fresh_cache():                                                 # each row's first load is cold
            loads = [timed(lambda: mglab.load(args.model, **kw)) for _ in range(2)]
            model = mglab.load(args.model, **kw)
            step_times(model, 8)                                            # warm up
            t = time.perf_counter()
            next(model.stream("lofi piano", duration=10, chunk_duration=1.0, do_sample=False))
            first_audio = time.perf_counter() - t
            short = rates(step_times(model, args.steps))
            long = rates(step_times(model, args.long_steps))
        per_step = decoder_bytes_per_step(model)
        bound = bandwidth / per_step
        last_bound = bandwidth / (per_step + kv_bytes(model, args.long_steps - 50))
        result["engines"][name] = {
            "steps_per_s": short["steps_per_s"], "first_100": long["first_100"], "last_100": long["last_100"],
            "time_to_first_audio_s": first_audio, "load_s": loads, "weight_bytes_per_step": per_step,
            "bandwidth_bound_steps_per_s": bound, "share_of_bound": short["steps_per_s"] / bound,
            "last_100_bound_steps_per_s": last_bound, "last_100_share_of_bound": long["last_100"] / last_bound,
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

    print(f"memory bandwidth: {result['bandwidth_gbps']:.1f} GB/s (probes: "
          + ", ".join(f"{k} {v:.1f}" for k, v in probes.items()) + ")\n")
    rows = []
    for name, e in result["engines"].items():
        pct = lambda key: f"{100 * e[key]:.0f}%" if key in e else "-"
        ttfa = f"{e['time_to_first_audio_s']:.2f}" if "time_to_first_audio_s" in e else "-"
        rows.append([name, f"{e['steps_per_s']:.1f}", pct("share_of_bound"), f"{e['first_100']:.1f}",
                     f"{e['last_100']:.1f}", f"{100 * e['last_100'] / e['first_100']:.0f}%",
                     pct("last_100_share_of_bound"), ttfa, " / ".join(f"{x:.1f}" for x in e["load_s"])])
    print(markdown_table(["engine", f"steps/s ({args.steps})", "share of bound", "first 100",
                          f"last 100 (of {args.long_steps})", "last / first", "last 100 share of bound (+KV)",
                          "first audio (s)", "load, first / second (s)"], rows))
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
