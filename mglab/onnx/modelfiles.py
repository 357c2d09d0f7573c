"""Find the files of a MusicGen ONNX export on disk, whatever its layout and variant.

Three layouts are understood::

    Xenova/musicgen-small        optimum-cli export (flat)     gabotechs/music_gen
    ├── config.json              ├── config.json               ├── small/config.json, tokenizer.json
    ├── generation_config.json   ├── generation_config.json    ├── small_fp32/text_encoder.onnx
    ├── tokenizer.json           ├── tokenizer.json            │              decoder_model_merged.onnx
    └── onnx/                    ├── text_encoder.onnx         │              encodec_decode.onnx
        ├── text_encoder.onnx    ├── decoder_model_merged.onnx ├── small_fp16/...
        ├── text_encoder_fp16.onnx                             ├── small_i8/...
        ├── decoder_model_merged_quantized.onnx                └── medium_fp32/... (+ .onnx_data files)
        └── ...

A variant (``dtype``) is a file-name suffix in the first two (``decoder_model_merged_quantized.onnx`` is the
q8 merged decoder) and a folder suffix in the third (``small_i8``). ``dtype`` may also be a dict per
component, as in transformers.js: ``{"text_encoder": "fp32", "decoder_model_merged": "q8"}``.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from pathlib import Path

SUFFIXES = {"fp32": "", "fp16": "_fp16", "q8": "_quantized", "int8": "_int8", "uint8": "_uint8", "bnb4": "_bnb4",
            "q4": "_q4", "q4f16": "_q4f16"}
GABOTECHS = {"fp32": "fp32", "fp16": "fp16", "q8": "i8", "int8": "i8"}
COMPONENTS = ("text_encoder", "decoder_model_merged", "decoder_model", "decoder_with_past_model",
              "encodec_decode", "masked_lm")                    # masked_lm: a masked (MAGNeT) model's LM


def component_dtypes(dtype) -> dict[str, str]:
    """``"q8"`` or ``{"decoder_model_merged": "q8", ...}`` -> a dtype for every component (fp32 if unnamed).

    ``"decoder"`` in a dict names the three decoder files at once.
    """
    if isinstance(dtype, str):
        if dtype not in SUFFIXES:
            raise ValueError(f"dtype={dtype!r} is not known; allowed: {list(SUFFIXES)} or a dict per component")
        return dict.fromkeys(COMPONENTS, dtype)
    if not isinstance(dtype, dict):
        raise TypeError(f"dtype={dtype!r} is not allowed: dtype must be a name {list(SUFFIXES)} or a dict")
    out = dict.fromkeys(COMPONENTS, "fp32")
    for key, value in dtype.items():
        keys = ["decoder_model_merged", "decoder_model", "decoder_with_past_model"] if key == "decoder" else [key]
        if key != "decoder" and key not in COMPONENTS:
            raise ValueError(f"dtype key {key!r} is not a component; allowed: {list(COMPONENTS)} or 'decoder'")
        if value not in SUFFIXES:
            raise ValueError(f"dtype[{key!r}]={value!r} is not known; allowed: {list(SUFFIXES)}")
        out.update(dict.fromkeys(keys, value))
    return out


def is_gabotechs(root: Path) -> bool:
    """Whether ``root`` has the ``gabotechs/music_gen`` layout (``small/config.json`` beside ``small_fp32/``)."""
    return any((d / "config.json").is_file() and (root / f"{d.name}_fp32").is_dir()
               for d in root.iterdir() if d.is_dir()) if root.is_dir() else False


class ModelFiles:
    """The files of one export: ``config_dir`` (json and tokenizer) and ``find(component, dtype)``."""

    def __init__(self, root: Path, size: str | None = None):
        self.root = Path(root)
        self.layout = "gabotechs" if is_gabotechs(self.root) else (
            "xenova" if (self.root / "onnx").is_dir() else "optimum")
        self.size = None
        if self.layout == "gabotechs":
            sizes = sorted(d.name for d in self.root.iterdir() if (d / "config.json").is_file())
            self.size = size or ("small" if "small" in sizes else sizes[0])
            if self.size not in sizes:
                raise ValueError(f"size={size!r} is not in {self.root}; sizes present: {sizes}")
        elif size is not None:
            raise ValueError(f"size={size!r}: only gabotechs/music_gen-shaped folders hold several sizes")
        self.config_dir = self.root / self.size if self.size else self.root

    def path(self, component: str, dtype: str) -> Path:
        """Where ``component`` in variant ``dtype`` would be (whether or not it is there)."""
        if self.layout == "gabotechs":
            return self.root / f"{self.size}_{GABOTECHS.get(dtype, dtype)}" / f"{component}.onnx"
        folder = self.root / "onnx" if self.layout == "xenova" else self.root
        return folder / f"{component}{SUFFIXES[dtype]}.onnx"

    def variants(self, component: str) -> list[str]:
        """The dtypes present on disk for one component, e.g. ``['fp32', 'q8']``."""
        seen, out = set(), []
        for d in SUFFIXES:
            p = self.path(component, d)
            if p.is_file() and p not in seen:
                seen.add(p)
                out.append(d)
        return out

    def find(self, component: str, dtype: str) -> Path:
        """Path of ``component`` in variant ``dtype``; a clear error listing the variants present."""
        path = self.path(component, dtype)
        if not path.is_file():
            have = self.variants(component)
            hint = (f"; for one component only, pass a dict, e.g. dtype={{'decoder_model_merged': {dtype!r}}}"
                    if have and component != "decoder_model_merged" else "")
            raise FileNotFoundError(f"{component} has no {dtype!r} variant in {self.root} (expected "
                                    f"{path.relative_to(self.root)}); variants present: {have or 'none'}{hint}")
        return path

    def choose_decoder(self, decoder: str, dtypes: dict[str, str]) -> str:
        """Resolve ``decoder='auto'|'merged'|'split'`` to ``'merged'`` or ``'split'`` for this folder."""
        if decoder not in ("auto", "merged", "split"):
            raise ValueError(f"decoder={decoder!r} is not known; allowed: 'auto', 'merged', 'split'")
        if decoder == "auto":
            return "merged" if self.path("decoder_model_merged", dtypes["decoder_model_merged"]).is_file() else "split"
        return decoder

    def __repr__(self) -> str:
        size = f", size={self.size!r}" if self.size else ""
        return f"ModelFiles({str(self.root)!r}, layout={self.layout!r}{size})"


def sha256(path: Path) -> str:
    """SHA-256 of a graph file (external data files included). A file in huggingface_hub's cache is a link
    to a blob named by its SHA-256: that name is used instead of reading gigabytes."""
    path = Path(path)
    parts = sorted(p for p in path.parent.glob(path.name + "*") if p.is_file())
    digests = [_blob_name(p) or _hash(p.resolve(), p.stat().st_size, p.stat().st_mtime_ns) for p in parts]
    return digests[0] if len(digests) == 1 else hashlib.sha256("".join(digests).encode()).hexdigest()


def _blob_name(path: Path) -> str | None:
    target = path.resolve()
    if path.is_symlink() and target.parent.name == "blobs" and re.fullmatch(r"[0-9a-f]{64}", target.name):
        return target.name
    return None


@lru_cache(maxsize=64)
def _hash(path: Path, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def file_bytes(path: Path) -> int:
    """A graph's bytes, external data files included."""
    return sum(p.stat().st_size for p in Path(path).parent.glob(Path(path).name + "*") if p.is_file())
