"""Command line: ``python -m mglab generate "lofi piano" --duration 2 --model DIR --out out.wav``.

Every generation flag is made from :data:`mglab.settings.PARAMS` (``--guidance-scale``, ``--negative-prompt``,
``--window``, ...), so the command line takes exactly what ``MusicGen.generate`` takes.
"""

from __future__ import annotations

import argparse
import sys

from .settings import GENERIC, PARAMS

TYPES = {"float": float, "int": int}


def _add_params(parser: argparse.ArgumentParser) -> None:
    for p in PARAMS:
        flag = "--" + p.name.replace("_", "-")
        help_ = f"{p.help} Allowed: {p.allowed.format(**GENERIC)}".replace("%", "%%")
        if p.type == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_)
        elif p.type == "seeds":
            parser.add_argument(flag, type=int, nargs="+", default=None, help=help_)
        elif p.type == "prompts":
            parser.add_argument(flag, nargs="+", default=None, help=help_)
        elif p.type == "choice":
            parser.add_argument(flag, choices=p.choices, default=p.default, help=help_)
        else:
            parser.add_argument(flag, type=TYPES[p.type], default=None, help=help_)


def _params(args) -> dict:
    out = {}
    for p in PARAMS:
        value = getattr(args, p.name)
        if p.type == "seeds" and value is not None and len(value) == 1:
            value = value[0]
        if value is not None:
            out[p.name] = value
    if args.greedy:
        out["do_sample"] = False
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="mglab", description="MusicGen through ONNX Runtime.")
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate", help="generate audio from a text prompt")
    g.add_argument("prompt", nargs="+", help="one or more prompts (each its own WAV)")
    g.add_argument("--model", required=True, help="model folder or Hub id")
    g.add_argument("--out", required=True, help="output WAV path (numbered per prompt for several)")
    _add_params(g)
    g.add_argument("--greedy", action="store_true", help="greedy decoding (same as --no-do-sample)")
    g.add_argument("--dtype", default="fp32", help="fp32, fp16, q8, int8, uint8 or q4")
    g.add_argument("--decoder", default="auto", choices=["auto", "merged", "split"])
    g.add_argument("--kv-cache", default="inplace", choices=["inplace", "concat"])
    g.add_argument("--device", default=None, choices=["cpu", "cuda", "coreml", "dml"])
    g.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    from pathlib import Path

    import mglab

    out = Path(args.out)
    if not out.parent.is_dir():
        parser.error(f"--out {args.out}: the folder {str(out.parent)!r} does not exist")
    model = mglab.load(args.model, dtype=args.dtype, decoder=args.decoder, kv_cache=args.kv_cache,
                       device=args.device)
    try:
        result = model.generate(args.prompt, progress=not args.no_progress, **_params(args))
    except (TypeError, ValueError) as err:
        parser.error(str(err))
    for path in result.save(out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
