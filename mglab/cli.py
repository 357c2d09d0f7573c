"""Command line: ``python -m mglab generate "lofi piano" --duration 2 --model DIR --out out.wav``."""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="mglab", description="MusicGen through ONNX Runtime.")
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate", help="generate audio from a text prompt")
    g.add_argument("prompt", nargs="+", help="one or more prompts (each its own WAV)")
    g.add_argument("--model", required=True, help="model folder")
    g.add_argument("--out", required=True, help="output WAV path (numbered per prompt for several)")
    g.add_argument("--duration", type=float, default=None, help="seconds of audio")
    g.add_argument("--max-new-tokens", type=int, default=None)
    g.add_argument("--guidance-scale", type=float, default=None)
    g.add_argument("--temperature", type=float, default=None)
    g.add_argument("--top-k", type=int, default=None)
    g.add_argument("--top-p", type=float, default=None)
    g.add_argument("--greedy", action="store_true", help="greedy decoding (do_sample=False)")
    g.add_argument("--seed", type=int, default=None)
    g.add_argument("--dtype", default="fp32")
    g.add_argument("--decoder", default="auto", choices=["auto", "merged", "split"])
    g.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    from pathlib import Path

    import mglab

    out = Path(args.out)
    if not out.parent.is_dir():
        parser.error(f"--out {args.out}: the folder {str(out.parent)!r} does not exist")
    model = mglab.load(args.model, dtype=args.dtype, decoder=args.decoder)
    result = model.generate(args.prompt, duration=args.duration, max_new_tokens=args.max_new_tokens,
                            guidance_scale=args.guidance_scale, temperature=args.temperature,
                            top_k=args.top_k, top_p=args.top_p, do_sample=False if args.greedy else None,
                            seed=args.seed, progress=not args.no_progress)
    for path in result.save(out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
