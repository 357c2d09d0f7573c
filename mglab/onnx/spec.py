"""How a model was loaded: a :class:`~mglab.LoadSpec` records it and :func:`~mglab.onnx.spec.locate` finds its files.

A model pickles as its spec, so a process that receives one (a Dask worker, a multiprocessing pool) loads
its own copy from the same files (``mglab.load(spec)``) instead of receiving sessions it could not use. The
spec only describes a load; the facade (:func:`mglab.load`) reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import hub
from . import modelfiles as files
from .session import resolve_providers

DECODERS = ("auto", "merged", "split")
KV_CACHES = ("inplace", "concat")


@dataclass(frozen=True)
class LoadSpec:
    """The arguments of :func:`mglab.load`."""

    path: str
    dtype: object = "fp32"
    decoder: str = "auto"
    providers: object = None
    device: str | None = None
    size: str | None = None
    revision: str | None = None
    local_files_only: bool = False
    cache_dir: object = None
    kv_cache: str = "inplace"
    matmul_accuracy: int | None = None


def locate(spec: LoadSpec) -> tuple[files.ModelFiles, str, dict, list]:
    """Check the spec and find its files (downloading a Hub id's): ``(files, layout, dtypes, providers)``."""
    dtypes = files.component_dtypes(spec.dtype)
    if spec.decoder not in DECODERS:
        raise ValueError(f"decoder={spec.decoder!r} is not known; allowed: {', '.join(map(repr, DECODERS))}")
    if spec.kv_cache not in KV_CACHES:
        raise ValueError(f"kv_cache={spec.kv_cache!r} is not known; allowed: {', '.join(map(repr, KV_CACHES))}")
    providers = resolve_providers(spec.providers, spec.device)
    source, size = spec.path, spec.size
    root = Path(source).expanduser()
    if not root.exists():
        if not hub.is_repo_id(source):
            raise FileNotFoundError(f"path={source!r}: no such model folder, and not a Hub id (owner/name)")
        size = size or ("small" if source.lower() == "gabotechs/music_gen" else None)
        kw = dict(size=size, revision=spec.revision, local_files_only=spec.local_files_only,
                  cache_dir=spec.cache_dir)
        want = ["text_encoder", "encodec_decode"]
        want += ["decoder_model_merged"] if spec.decoder != "split" else ["decoder_model", "decoder_with_past_model"]
        root = hub.download(source, {c: dtypes[c] for c in want}, **kw)
        found = files.ModelFiles(root, size)
        if spec.decoder == "auto" and not found.path("decoder_model_merged", dtypes["decoder_model_merged"]).is_file():
            split = ["decoder_model", "decoder_with_past_model"]
            root = hub.download(source, {c: dtypes[c] for c in split}, **kw)
    elif not root.is_dir():
        raise FileNotFoundError(f"path={source!r} is a file, not a model folder")
    found = files.ModelFiles(root, size)
    for name in ("config.json", "tokenizer.json"):
        if not (found.config_dir / name).is_file():
            raise FileNotFoundError(f"path={source!r}: {name} is missing from {found.config_dir}")
    return found, found.choose_decoder(spec.decoder, dtypes), dtypes, providers
