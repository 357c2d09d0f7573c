"""nano-magnet's adherence under decoding settings other than MAGNeT's defaults, on eval_nano.py's prompts.

    .venv/bin/python benchmarks/magnet_settings.py [--prompts 48] [--seeds 2] [--only NAME ...]

audiocraft's MAGNeT defaults (temperature 3.0 annealed, top-p 0.9, guidance 10 -> 1, [20, 10, 10, 10]) were
chosen for the published models ("defaults" is the model's own ``config.json``: for the bundle, with VampNet's
mask temperature 4.5). Each row here changes one or two of them and measures the clips from the audio
(``mglab.audio.evaluate``), as ``eval_magnet.py`` does: which setting lets the small model follow its prompt.
Prints a markdown table, writes ``reports/magnet_settings.json``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import markdown_table, process_pool, write_json
from eval_magnet import _load, _run
from eval_nano import ATTRS, combination, held_out_clips, score

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {
    "defaults": {},
    "temperature 1.5": {"temperature": 1.5},
    "temperature 1.0": {"temperature": 1.0},
    "temperature 0.5": {"temperature": 0.5},
    "top-p off": {"top_p": 0.0},
    "guidance 3 -> 1": {"max_cfg_coef": 3.0},
    "guidance 3 -> 3": {"max_cfg_coef": 3.0, "min_cfg_coef": 3.0},
    "stage 0 x2 [40, 10, 10, 10]": {"decoding_steps": [40, 10, 10, 10]},
    "temperature 1.0, guidance 3 -> 3": {"temperature": 1.0, "max_cfg_coef": 3.0, "min_cfg_coef": 3.0},
    "mask temperature 0": {"mask_temperature": 0.0},
    "mask temperature 1": {"mask_temperature": 1.0},
    "mask temperature 4.5": {"mask_temperature": 4.5},
    "span scoring prod": {"span_scoring": "prod"},
    "span scoring prod, mask temperature 2": {"span_scoring": "prod", "mask_temperature": 2.0},
    "span scoring prod, mask temperature 9": {"span_scoring": "prod", "mask_temperature": 9.0},
    "span arrangement stride1": {"span_arrangement": "stride1"},
}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "data" / "models" / "nano-magnet")
    parser.add_argument("--prompts", type=int, default=48)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", nargs="+", default=None, help="rows of SETTINGS to run")
    parser.add_argument("--json", type=Path, default=ROOT / "reports" / "magnet_settings.json")
    args = parser.parse_args(argv)
    chosen = {k: v for k, v in SETTINGS.items() if args.only is None or k in args.only}
    clips = held_out_clips(args.prompts, args.duration)
    tasks = [(("masked", label, kw), c.prompt, c.said, combination(c.attributes), args.seeds, args.duration)
             for label, kw in chosen.items() for c in clips]
    t0 = time.time()
    with process_pool(args.workers, _load, ({"masked": str(args.model)},)) as pool:
        rows = [r for rows_ in pool.map(_run, tasks, chunksize=4) for r in rows_]
    table = {label: score([r for r in rows if r["setting"] == label]) for label in chosen}
    print(markdown_table(["setting", *ATTRS, "abstained"],
                         [[label, *(f"{100 * v[a][0]:.0f}%" for a in (*ATTRS, "abstained"))]
                          for label, v in table.items()]))
    result = {"model": str(args.model), "prompts": args.prompts, "seeds": args.seeds, "settings": chosen,
              "seconds": time.time() - t0, "table": table, "rows": rows}
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
