"""Find the ONNX files of a MusicGen export on disk.

Two layouts are understood::

    Xenova/musicgen-small            optimum-cli export (flat)
    ├── config.json                  ├── config.json
    ├── generation_config.json       ├── generation_config.json
    ├── tokenizer.json               ├── tokenizer.json
    └── onnx/                        ├── text_encoder.onnx
        ├── text_encoder.onnx        ├── decoder_model.onnx
        ├── text_encoder_quantized.onnx ... (same names)
        └── ...

A variant (``dtype``) is a file-name suffix: ``decoder_model_merged_quantized.onnx`` is the q8 merged decoder.
"""

from __future__ import annotations

from pathlib import Path

SUFFIXES = {"fp32": "", "fp16": "_fp16", "q8": "_quantized", "int8": "_int8", "uint8": "_uint8", "q4": "_q4"}
COMPONENTS = ("text_encoder", "decoder_model_merged", "decoder_model", "decoder_with_past_model",
              "encodec_decode")


def onnx_dir(root: Path) -> Path:
    """The folder holding the ``.onnx`` files: ``root/onnx`` (Xenova) or ``root`` (optimum)."""
    return root / "onnx" if (root / "onnx").is_dir() else root


def variants(root: Path, component: str) -> list[str]:
    """The dtypes present on disk for one component, e.g. ``['fp32', 'q8']``."""
    folder = onnx_dir(root)
    return [d for d, s in SUFFIXES.items() if (folder / f"{component}{s}.onnx").is_file()]


def find(root: Path, component: str, dtype: str) -> Path:
    """Path of ``component`` in variant ``dtype``; a clear error listing what exists if it is missing."""
    if dtype not in SUFFIXES:
        raise ValueError(f"dtype={dtype!r} is not known; allowed: {sorted(SUFFIXES)}")
    path = onnx_dir(root) / f"{component}{SUFFIXES[dtype]}.onnx"
    if not path.is_file():
        have = variants(root, component)
        raise FileNotFoundError(f"{component} has no {dtype!r} variant in {onnx_dir(root)} "
                                f"(expected {path.name}); variants present: {have or 'none'}")
    return path


def choose_decoder(root: Path, decoder: str, dtype: str) -> str:
    """Resolve ``decoder='auto'|'merged'|'split'`` to ``'merged'`` or ``'split'`` for this folder."""
    if decoder not in ("auto", "merged", "split"):
        raise ValueError(f"decoder={decoder!r} is not known; allowed: 'auto', 'merged', 'split'")
    if decoder == "auto":
        return "merged" if dtype in variants(root, "decoder_model_merged") else "split"
    return decoder
