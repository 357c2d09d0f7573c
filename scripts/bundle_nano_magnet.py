"""Bundle a trained nano-magnet checkpoint: ``python -m mglab export`` of it, the checkpoint beside the graphs.

    python scripts/bundle_nano_magnet.py CHECKPOINT [--out data/models/nano-magnet]

``CHECKPOINT`` is what ``scripts/train_nano_magnet.py --out`` wrote (audiocraft's layout, its codec the nano
synthesizer ``mglab:nano-synth``). The bundle: the export (fp32 and q8; ``config.json``'s generation block gains
``mask_temperature``, :data:`MASK_TEMPERATURE` unless given, and a ``vamp`` block, :data:`VAMP`),
``audiocraft/`` (the checkpoint as trained, for the parity tests) and ``training.json``; replaced as a whole,
atomically. The card (``README.md``) is written by ``benchmarks/eval_nano.py --model OUT``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mglab.nano import synth  # noqa: E402
from mglab.onnx import magnet_checkpoint  # noqa: E402

# kept from the bundle it replaces: the card, the controlled run that chose the warm start (its two training.json
# logs, 400 steps from the same seed: from nano-musicgen and from torch's initialization) and the runs that chose the
# attention of stages > 0 (benchmarks/magnet_stages.py on two models that differ in --context only)
KEPT = ("README.md", "warm_start_experiment.json", "context_experiment.json")
# the bundle's default noise on which spans are redrawn (VampNet's mask temperature; audiocraft's MAGNeT has none):
# with the guided stage it keeps stage 0 from settling on one held note (docs/guide/masked.md, "The guided stage")
MASK_TEMPERATURE = 4.5
# the bundle's vamping defaults (config.json's "vamp" block, over "generation" in model.vamp): MAGNeT's temperature 3
# is for a clip made from nothing; a vamp's kept frames already say the key, and at 3 a fifth of the middles
# strayed from it (docs/guide/masked.md, "Vamping")
VAMP = {"temperature": 1.0}


def bundle(ckpt: Path, out: Path, mask_temperature: float = MASK_TEMPERATURE) -> Path:
    if not 0 <= mask_temperature < float("inf"):
        raise ValueError(f"mask_temperature={mask_temperature!r} is not allowed: a finite number >= 0")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        exported = magnet_checkpoint.export(ckpt, Path(tmp) / "export",
                                            codecs={magnet_checkpoint.SYNTH: synth.build_for_export})
        config = json.loads((exported / "config.json").read_text())
        config["generation"]["mask_temperature"] = mask_temperature
        config["vamp"] = dict(VAMP)
        (exported / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        shutil.copytree(ckpt, exported / "audiocraft", ignore=shutil.ignore_patterns("training.json"))
        shutil.copy(ckpt / "training.json", exported / "training.json")
        for kept in KEPT:                                       # the card stays until the evaluation rewrites it
            if (out / kept).is_file():
                shutil.copy(out / kept, exported / kept)
        if out.exists():
            shutil.rmtree(out)
        shutil.move(str(exported), out)
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--out", type=Path, default=ROOT / "data" / "models" / "nano-magnet")
    p.add_argument("--mask-temperature", type=float, default=MASK_TEMPERATURE,
                   help="the bundle's default mask_temperature (config.json's generation block)")
    args = p.parse_args(argv)
    try:
        print(bundle(args.checkpoint, args.out, args.mask_temperature))
    except ValueError as err:
        p.error(f"--mask-temperature: {err}")


if __name__ == "__main__":
    main()
