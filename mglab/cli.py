"""Command line: ``python -m mglab generate "lofi piano" --duration 2 --model DIR --out out.wav``, and
``python -m mglab sweep GRID.toml --out DIR [--scheduler ADDRESS | --in-process]`` (:func:`mglab.sweep`)::

    # GRID.toml
    model = "data/models/nano-musicgen"
    [grid]                          # generate argument -> list: their cartesian product
    prompt = ["a slow low organ melody", "a fast high flute scale"]
    seed = [0, 1]
    guidance_scale = [1.0, 3.0]
    [generate]                      # fixed for every row
    duration = 4.0

Every generation flag is made from :data:`mglab.core.settings.PARAMS` (``--guidance-scale``, ``--negative-prompt``,
``--window``, ...), so the command line takes exactly what ``MusicGen.generate`` takes.
"""

from __future__ import annotations

import argparse
import sys

from .core.masked_settings import GENERIC as MASKED_GENERIC
from .core.masked_settings import MASKED_PARAMS
from .core.settings import GENERIC, PARAMS

# a masked (MAGNeT) model's own arguments: flags too, said to be for masked models
MASKED_ONLY = tuple(p for p in MASKED_PARAMS if p.name not in {q.name for q in PARAMS})

TYPES = {"float": float, "int": int}


def _add_params(parser: argparse.ArgumentParser) -> None:
    for p in PARAMS + MASKED_ONLY:
        flag = "--" + p.name.replace("_", "-")
        masked = p in MASKED_ONLY
        help_ = (("Masked (MAGNeT) models: " if masked else "") + f"{p.help} Allowed: "
                 f"{p.allowed.format(**(MASKED_GENERIC if masked else GENERIC))}").replace("%", "%%")
        if p.type == "steps":
            parser.add_argument(flag, type=int, nargs="+", default=None, help=help_)
        elif p.type == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_)
        elif p.type == "seeds":
            parser.add_argument(flag, type=int, nargs="+", default=None, help=help_)
        elif p.type == "prompts":
            parser.add_argument(flag, nargs="+", default=None, help=help_)
        elif p.type == "choice":
            parser.add_argument(flag, choices=p.choices, default=None, help=help_)   # given or the model's
        else:
            parser.add_argument(flag, type=TYPES[p.type], default=None, help=help_)


def _params(args) -> dict:
    out = {}
    for p in PARAMS + MASKED_ONLY:
        value = getattr(args, p.name)
        if p.type == "seeds" and value is not None and len(value) == 1:
            value = value[0]
        if value is not None:                                                          # only what was given
            out[p.name] = value
    if args.greedy:
        out["do_sample"] = False
    return out


def main(argv=None) -> int:
    """The command line (``python -m mglab``, ``mglab``): parse ``argv`` and run the subcommand; the exit status."""
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
    g.add_argument("--audio", default=None, help="an audio file to continue (its frames come first; needs "
                                                 "encodec_encode.onnx: python -m mglab export writes it)")
    w = sub.add_parser("sweep", help="run a grid of generate settings on Dask (mglab.sweep)")
    w.add_argument("grid", help="a TOML file: model = ..., [grid] of lists, [generate] fixed settings")
    w.add_argument("--out", required=True, help="output folder (rows/, results.parquet); a rerun resumes")
    w.add_argument("--scheduler", default=None, help="a Dask scheduler address (default: a local cluster)")
    w.add_argument("--no-evaluate", action="store_true", help="skip the mglab.audio.evaluate measurements")
    w.add_argument("--in-process", action="store_true", help="run the rows in this process (no Dask cluster)")
    x = sub.add_parser("export", help="export a transformers MusicGen checkpoint to ONNX (Xenova layout + "
                                      "encodec_encode.onnx), or an audiocraft MAGNeT checkpoint (masked layout)")
    x.add_argument("src", help="checkpoint folder (config.json + weights, or audiocraft's state_dict.bin + "
                               "compression_state_dict.bin) or Hub id")
    x.add_argument("out", help="output folder (refused if not empty, unless --force)")
    x.add_argument("--dtypes", default="fp32,q8", help="variants to write, comma-separated (fp32 always)")
    x.add_argument("--force", action="store_true", help="replace a non-empty OUT")
    args = parser.parse_args(argv)
    if args.command == "sweep":
        return _sweep(parser, args)
    if args.command == "export":
        from .nano import synth
        from .onnx import magnet_checkpoint
        from .onnx.export import export
        try:
            if magnet_checkpoint.is_checkpoint(args.src):          # audiocraft MAGNeT: the masked layout
                print(magnet_checkpoint.export(args.src, args.out, args.dtypes, args.force,
                                               codecs={magnet_checkpoint.SYNTH: synth.build_for_export}))
                return 0
            print(export(args.src, args.out, args.dtypes, args.force))
        except (ValueError, FileExistsError, NotImplementedError) as err:
            parser.error(str(err))
        return 0

    from pathlib import Path

    import mglab

    out = Path(args.out)
    if not out.name:
        parser.error(f"--out {args.out!r}: give a WAV file name")
    if not out.parent.is_dir():
        parser.error(f"--out {args.out}: the folder {str(out.parent)!r} does not exist")
    try:
        model = mglab.load(args.model, dtype=args.dtype, decoder=args.decoder, kv_cache=args.kv_cache,
                           device=args.device)
    except (TypeError, ValueError, FileNotFoundError, KeyError) as err:
        parser.error(f"--model {args.model}: {err}")
    try:
        given = {} if args.audio is None else {"audio": args.audio}           # a masked model takes no audio
        result = model.generate(args.prompt, progress=not args.no_progress, **given, **_params(args))
    except (TypeError, ValueError, FileNotFoundError, KeyError) as err:
        parser.error(str(err))
    for path in result.save(out):
        print(path)
    return 0


def _sweep(parser, args) -> int:
    from pathlib import Path

    import tomllib

    import mglab

    path = Path(args.grid)
    if not path.is_file():
        parser.error(f"{args.grid}: no such file")
    try:
        spec = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        parser.error(f"{args.grid}: not TOML: {err}")
    if "model" not in spec or "grid" not in spec or not isinstance(spec["model"], str):
        parser.error(f"{args.grid}: needs model = \"...\" and a [grid] table")
    if not isinstance(spec.get("generate", {}), dict):
        parser.error(f"{args.grid}: [generate] must be a table of fixed settings")
    try:
        model = mglab.load(spec["model"])
    except (TypeError, ValueError, FileNotFoundError, KeyError) as err:
        parser.error(f"{args.grid}: model = {spec['model']!r}: {err}")
    client = False if args.in_process else None
    if args.scheduler and not args.in_process:
        from distributed import Client

        client = Client(args.scheduler)
    try:
        table = mglab.sweep(model, spec["grid"], args.out, client=client, evaluate=not args.no_evaluate,
                            **spec.get("generate", {}))
    except (TypeError, ValueError, FileNotFoundError, KeyError) as err:
        parser.error(str(err))
    print(f"{len(table)} rows ({int((table['status'] == 'ok').sum())} ok) -> {Path(args.out) / 'results.parquet'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
