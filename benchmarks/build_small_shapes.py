"""Build a random-weight MusicGen with musicgen-small's exact shapes, for benchmarks only.

t5-base text encoder (d 768, 12 layers, 12 heads, vocab 32128), decoder 24 layers x 1024 wide, 16 heads,
ffn 4096, 4 codebooks of 2048 entries, EnCodec at 32 kHz (hop 640). Exported with optimum in the
``Xenova/musicgen-small`` layout, fp32 and q8 (``_quantized``) graphs, PyTorch weights under ``pytorch/``.
About 8 GB on disk and a few minutes; never committed. Needs the ``reference`` extra (``make test`` installs it).

    .venv/bin/python benchmarks/build_small_shapes.py            # -> $MGLAB_CACHE/small-shapes
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from build_tiny_model import build, write_variants  # noqa: E402

from mglab.onnx.graphfile import cache_dir  # noqa: E402

SMALL = dict(
    text=dict(d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12),
    # 1000 * 2.2 kbps // (50 frames/s * 11 bits) = 4 codebooks of 2048 entries, as musicgen-small.
    audio=dict(hidden_size=128, num_filters=64, num_residual_layers=1, codebook_size=2048,
               target_bandwidths=[2.2], num_lstm_layers=2),
    decoder=dict(vocab_size=2048, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, ffn_dim=4096),
    max_length=1500,
)


def default_path() -> Path:
    return cache_dir() / "small-shapes"


RECIPE = "xenova-v1"       # scripts/quantize.py; a cache made with an older recipe gets its variants rewritten
VARIANTS = (("q8",), ("q8", "q4"))     # of every graph, of the merged decoder: what users run


def ensure(path: Path | None = None) -> Path:
    """The small-shapes model folder, built first if it is not there yet: fp32 graphs, q8 of every graph and
    q4 of the merged decoder (Xenova's recipe: what users run)."""
    path = Path(path or default_path())
    stamp = path / "onnx" / "variants.txt"
    t = time.perf_counter()
    if not (path / "onnx" / "decoder_model_merged.onnx").is_file():
        build(path, seed=0, sizes=SMALL, text_vocab=32128, variants=VARIANTS)
        print(f"built {path} in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    elif not stamp.is_file() or stamp.read_text().strip() != RECIPE:
        write_variants(path / "onnx", *VARIANTS)
        print(f"rewrote the variants of {path} ({RECIPE}) in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    stamp.write_text(RECIPE + "\n")
    return path


def model_parser(doc: str, json_name: str):
    """The arguments every benchmark shares: ``--model`` (default: this model, built if absent), ``--dtype``,
    ``--decoder``, ``--json``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="default: the small-shapes model (built if absent)")
    parser.add_argument("--dtype", default="q8")
    parser.add_argument("--decoder", default="split")
    parser.add_argument("--json", type=Path, default=Path("reports") / json_name)
    return parser


def load_model(args):
    """``mglab.load`` of ``args.model`` (the small-shapes model when unset) with ``args.dtype``, ``args.decoder``."""
    import mglab
    args.model = args.model or ensure()
    return mglab.load(args.model, dtype=args.dtype, decoder=args.decoder)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help=f"default {default_path()}")
    print(ensure(parser.parse_args().out))
