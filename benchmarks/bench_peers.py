"""The peers side by side: mglab, transformers.js (Node) and transformers (PyTorch), in one run, same files.

    .venv/bin/python benchmarks/bench_peers.py [--model DIR] [--steps 100 500] [--skip-js] [--skip-transformers]

Measures steps/s of a greedy generation with guidance 3 of one prompt ("lofi piano"), over each of ``--steps``
(a fresh generation each, after an 8-step warm-up), on the musicgen-small-shaped model (built on first use by
``build_small_shapes.py``), every engine on the same ONNX files, the merged decoder as published:

- mglab and transformers.js: fp32, q8 (text encoder and decoder q8, codec fp32: transformers.js's own example)
  and q4 (decoder q4, text encoder q8); mglab also q4 with ``matmul_accuracy=4``;
- transformers' ``generate`` (fp32) on the PyTorch checkpoint the ONNX files were exported from (``pytorch/``).

A step's time runs from one step's tokens to the next (the first also holds the text encoder); the codec's
decode at the end is not counted. Every engine keeps its threading default (ONNX Runtime and torch: one thread
a physical core) unless ``--threads`` sets transformers.js's and torch's (mglab has no knob). Then, on the
bundled nano model, a check that mglab's and transformers.js's codes and audio are equal (fp32 and q8, two
prompts, greedy, guidance 3, ``--nano-steps`` steps; transformers.js does not force the delay pattern's pads at
the end, so codebook k's last k - 1 frames may differ: ``transformers_js.end_pad_frames``). Prints a markdown
table headed by the date, the CPU, its SIMD flags and the threads, and writes JSON. transformers.js
(``transformers_js.py``: pinned, installed by npm into ``$MGLAB_NODE_CACHE`` on first use, about 5 s and 475 MB)
is skipped with a message where ``node`` is missing.
"""

from __future__ import annotations

import datetime
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import transformers_js  # noqa: E402
from build_small_shapes import model_parser  # noqa: E402
from common import markdown_table, step_times, step_times_transformers, write_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NANO = ROOT / "data" / "models" / "nano-musicgen"
PROMPT = "lofi piano"
NANO_PROMPTS = ["slow soft piano melody in C major", "loud fast organ scale"]
WARMUP = 8
VARIANTS = {       # name -> (dtype per component, mglab's matmul_accuracy)
    "fp32": ({"text_encoder": "fp32", "decoder_model_merged": "fp32", "encodec_decode": "fp32"}, None),
    "q8": ({"text_encoder": "q8", "decoder_model_merged": "q8", "encodec_decode": "fp32"}, None),
    "q4": ({"text_encoder": "q8", "decoder_model_merged": "q4", "encodec_decode": "fp32"}, None),
    "q4, accuracy level 4": ({"text_encoder": "q8", "decoder_model_merged": "q4", "encodec_decode": "fp32"}, 4),
}
FLAGS = ("sse4_2", "fma", "f16c", "avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16",
         "amx_int8")


def machine(threads: int | None) -> dict:
    """Date, CPU model, the SIMD flags that matter to these kernels, cores, threads, load and versions."""
    import onnxruntime
    import psutil

    info = {"date": datetime.datetime.now().isoformat(timespec="minutes"), "cpu": platform.processor(),
            "flags": [], "physical_cores": psutil.cpu_count(logical=False), "logical_cores": psutil.cpu_count(),
            "load_average": os.getloadavg(), "onnxruntime": onnxruntime.__version__,
            "threads": {"mglab": "ONNX Runtime default (one per physical core)",
                        "transformers.js": threads or "ONNX Runtime default (one per physical core)"}}
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        lines = cpuinfo.read_text().splitlines()
        info["cpu"] = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), info["cpu"])
        flags = next((ln.split(":", 1)[1].split() for ln in lines if ln.startswith("flags")), [])
        info["flags"] = [f for f in FLAGS if f in flags]
    return info


def rates(times: list[float]) -> float:
    return len(times) / sum(times)


def bench_mglab(model_dir: Path, steps: list[int]) -> dict:
    """mglab's steps/s for every variant (merged decoder, as transformers.js runs it)."""
    import mglab

    out = {}
    for name, (dtype, level) in VARIANTS.items():
        t = time.perf_counter()
        model = mglab.load(model_dir, dtype=dtype, decoder="merged", matmul_accuracy=level)
        load = time.perf_counter() - t
        step_times(model, WARMUP, prompt=PROMPT)
        out[name] = {"load_s": load, **{str(n): rates(step_times(model, n, prompt=PROMPT)) for n in steps}}
        print(f"mglab {name}: " + ", ".join(f"{n} steps {out[name][str(n)]:.1f}/s" for n in steps), flush=True)
        del model
    return out


def bench_js(view: Path, steps: list[int], threads: int | None) -> dict:
    """transformers.js's steps/s for every variant it runs (accuracy levels are mglab's rewrite)."""
    out = {}
    for name, (dtype, level) in VARIANTS.items():
        if level is not None:
            continue
        tasks = [{"kind": "time", "prompt": PROMPT, "max_new_tokens": n, "guidance_scale": 3.0}
                 for n in [WARMUP, *steps]]
        done = transformers_js.run(view, dtype, tasks, threads=threads)
        timings = [r["step_s"] for r in done["results"][1:]]
        out[name] = {"load_s": done["load_s"], "versions": done["versions"],
                     **{str(n): rates(t) for n, t in zip(steps, timings)}}
        print(f"transformers.js {name}: " + ", ".join(f"{n} steps {out[name][str(n)]:.1f}/s" for n in steps),
              flush=True)
    return out


def bench_torch(model_dir: Path, steps: list[int], threads: int | None) -> dict:
    """transformers' steps/s (fp32) on the checkpoint under ``pytorch/``."""
    import torch
    import transformers
    from transformers import MusicgenForConditionalGeneration

    import mglab

    if threads:
        torch.set_num_threads(threads)
    t = time.perf_counter()
    torch_model = MusicgenForConditionalGeneration.from_pretrained(model_dir / "pytorch").eval()
    load = time.perf_counter() - t
    ids, mask = mglab.load(model_dir, dtype="fp32", decoder="merged").text.tokenize([PROMPT])
    step_times_transformers(torch_model, ids, mask, WARMUP)
    out = {"load_s": load, "threads": torch.get_num_threads(),
           "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
           **{str(n): rates(step_times_transformers(torch_model, ids, mask, n)) for n in steps}}
    print("transformers fp32: " + ", ".join(f"{n} steps {out[str(n)]:.1f}/s" for n in steps), flush=True)
    return {"fp32": out}


def compare(mglab_gen, js: dict) -> dict:
    """How mglab's codes and audio compare with transformers.js's."""
    same_shape = mglab_gen.codes.shape == js["codes"].shape
    differ = np.argwhere(mglab_gen.codes != js["codes"]) if same_shape else np.zeros((0, 3), int)
    tail = transformers_js.end_pad_frames(mglab_gen.codes.shape) if same_shape else None
    return {"codes_shape": list(mglab_gen.codes.shape), "js_codes_shape": list(js["codes"].shape),
            "codes_equal": bool(same_shape and not differ.size),
            "differ_only_at_the_end_pads": bool(same_shape and all(tail[tuple(d)] for d in differ)),
            "first_differing_frame": int(differ[:, 2].min()) if differ.size else None,
            "share_of_codes_equal": float((mglab_gen.codes == js["codes"]).mean()) if same_shape else 0.0,
            "audio_max_abs_diff": float(np.abs(mglab_gen.audio - js["audio"]).max()) if same_shape else None}


def nano_equality(view_root: Path, steps: int) -> dict:
    """mglab against transformers.js on the bundled nano model: fp32 and q8, two prompts, greedy, guidance 3."""
    import mglab

    view = transformers_js.model_view(NANO, view_root, "nano-musicgen")
    out = {}
    for name in ("fp32", "q8"):
        dtype = VARIANTS[name][0]
        js = transformers_js.generate(view, dtype, NANO_PROMPTS, steps)
        gen = mglab.load(NANO, dtype=dtype, decoder="merged").generate(
            NANO_PROMPTS, max_new_tokens=steps, do_sample=False, guidance_scale=3.0)
        out[name] = compare(gen, js)
        print(f"nano {name}: codes equal {out[name]['codes_equal']} (differing only on the end pads' frames: "
              f"{out[name]['differ_only_at_the_end_pads']}), audio max |diff| {out[name]['audio_max_abs_diff']:.3g}",
              flush=True)
    return out


def table(result: dict, steps: list[int]) -> str:
    """The markdown table: one row per engine and variant, with mglab's speed-up over transformers.js."""
    js = result["engines"].get("transformers.js", {})
    rows = []
    for engine, variants in result["engines"].items():
        for name, r in variants.items():
            base = js.get(name.split(",")[0]) if engine == "mglab" else None
            ratio = " / ".join(f"{r[str(n)] / base[str(n)]:.2f}x" for n in steps) if base else "-"
            rows.append([engine, name, *[f"{r[str(n)]:.1f}" for n in steps], ratio, f"{r['load_s']:.1f}"])
    return markdown_table(["engine", "variant", *[f"steps/s ({n})" for n in steps],
                           "vs transformers.js (" + " / ".join(map(str, steps)) + ")", "load (s)"], rows)


def header(m: dict, result: dict) -> str:
    """One line saying when, on what and with how many threads the table was measured."""
    versions = next(iter(result["engines"].get("transformers.js", {}).values()), {}).get("versions", {})
    torch_row = result["engines"].get("transformers", {}).get("fp32", {})
    parts = [m["date"], f"{m['cpu']} ({m['physical_cores']} cores / {m['logical_cores']} threads)",
             "flags " + ", ".join(m["flags"]), f"load average {m['load_average'][0]:.2f}",
             f"onnxruntime {m['onnxruntime']}", f"threads: mglab {m['threads']['mglab']}"]
    if versions:
        parts.append("transformers.js " + versions["@huggingface/transformers"]
                     + f" (onnxruntime-node {versions['onnxruntime-node']}, node {versions['node']}) with threads: "
                     + str(m["threads"]["transformers.js"]))
    if torch_row:
        parts.append(f"transformers {torch_row['versions']['transformers']} / torch {torch_row['versions']['torch']}"
                     f" with {torch_row['threads']} threads")
    return "; ".join(parts)


def main(argv=None) -> dict:
    parser = model_parser(__doc__, "bench_peers.json")
    parser.add_argument("--steps", type=int, nargs="+", default=[100, 500])
    parser.add_argument("--nano-steps", type=int, default=100)
    parser.add_argument("--threads", type=int, default=None, help="transformers.js's and torch's (default theirs)")
    parser.add_argument("--skip-js", action="store_true")
    parser.add_argument("--skip-transformers", action="store_true")
    args = parser.parse_args(argv)
    if args.model is None:
        from build_small_shapes import ensure
        args.model = ensure()
    args.model = Path(args.model)
    why_not_js = "--skip-js" if args.skip_js else transformers_js.missing_node()
    if why_not_js:
        print(f"transformers.js skipped: {why_not_js}", flush=True)
    result = {"model": str(args.model), "prompt": PROMPT, "steps": args.steps, "settings": "greedy, guidance 3.0",
              "machine": machine(args.threads), "engines": {}, "transformers_js_skipped": why_not_js}
    result["engines"]["mglab"] = bench_mglab(args.model, args.steps)
    if not why_not_js:
        import tempfile
        with tempfile.TemporaryDirectory() as views:
            view = transformers_js.model_view(args.model, views, args.model.name)
            result["engines"]["transformers.js"] = bench_js(view, args.steps, args.threads)
            result["nano_equality"] = nano_equality(Path(views), args.nano_steps)
    if not args.skip_transformers and (args.model / "pytorch").is_dir():
        result["engines"]["transformers"] = bench_torch(args.model, args.steps, args.threads)
    elif not args.skip_transformers:
        print(f"transformers skipped: {args.model} keeps no PyTorch checkpoint (pytorch/)", flush=True)
    print("\n" + header(result["machine"], result) + "\n")
    print(table(result, args.steps))
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
