"""Hugging Face Hub ids: download only the files the chosen variant needs, into huggingface_hub's cache.

``mglab.load("Xenova/musicgen-small", dtype="q8")`` fetches the json files, the tokenizer and the four q8
graphs it runs, never the whole (5 GB) repository. Offline (``HF_HUB_OFFLINE=1`` or ``local_files_only=True``)
the cached snapshot is used; with nothing cached the error says what to download and how.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .modelfiles import GABOTECHS, SUFFIXES

REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
JSON = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
        "preprocessor_config.json", "special_tokens_map.json"]


def is_repo_id(name: str) -> bool:
    """Whether ``name`` is a Hub id (``owner/name``) rather than a local path."""
    return bool(REPO_ID.match(name)) and not Path(name).exists()


def allow_patterns(components: dict[str, str], *, size: str | None) -> list[str]:
    """File patterns for ``{component: dtype}``: the Xenova ``onnx/`` layout and the flat one, or with
    ``size`` the gabotechs per-size layout. External data (``.onnx_data``) comes along."""
    if size is not None:
        patterns = [f"{size}/{name}" for name in JSON]
        for component, dtype in components.items():
            folder = f"{size}_{GABOTECHS.get(dtype, dtype)}"
            patterns += [f"{folder}/{component}.onnx", f"{folder}/{component}.onnx_data*",
                         f"{folder}/{component}.onnx.data"]
        return patterns
    patterns = list(JSON)
    for component, dtype in components.items():
        stem = f"{component}{SUFFIXES[dtype]}"
        for folder in ("onnx/", ""):
            patterns += [f"{folder}{stem}.onnx", f"{folder}{stem}.onnx_data*", f"{folder}{stem}.onnx.data"]
    return patterns


def download(repo_id: str, components: dict[str, str], *, size: str | None = None, revision: str | None = None,
             local_files_only: bool = False, cache_dir=None) -> Path:
    """``snapshot_download`` of the files ``components`` needs; returns the snapshot folder."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    patterns = allow_patterns(components, size=size)
    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=patterns,
                                      local_files_only=local_files_only, cache_dir=cache_dir))
    except LocalEntryNotFoundError as err:
        offline = local_files_only or os.environ.get("HF_HUB_OFFLINE", "0").upper() in ("1", "ON", "YES", "TRUE")
        if not offline:
            raise
        include = " ".join(f"--include '{p}'" for p in patterns if "*" not in p and p.endswith(".onnx"))
        raise FileNotFoundError(
            f"{repo_id} is not in the Hugging Face cache ({cache_dir or 'HF_HOME'}) and downloads are off "
            f"(HF_HUB_OFFLINE=1 or local_files_only=True). Download it once with a network: "
            f"`huggingface-cli download {repo_id} {include} --include '*.json'`, or run "
            f"mglab.load({repo_id!r}, ...) online, then load again offline.") from err


