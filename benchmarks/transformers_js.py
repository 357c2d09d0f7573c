"""transformers.js as a peer: installed with npm into a cache folder, run through ``node`` on local model files.

Used by ``bench_peers.py`` and ``tests/test_peers.py``. ``@huggingface/transformers`` (pinned, ``VERSION``) is
installed with ``npm install --ignore-scripts``: the CPU runtime ships inside onnxruntime-node, whose install
script would only try to download GPU binaries. The folder is ``$MGLAB_NODE_CACHE`` (default
``~/.cache/mglab/node``), not ``$MGLAB_CACHE``: the test suite points that one at a fresh temporary folder, which
would make every session install again. ``transformers_js.cjs`` runs the model (``env.allowRemoteModels =
false``, ``env.localModelPath``) and reports codes, audio and step times.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

VERSION = "4.3.2"                      # @huggingface/transformers; brings onnxruntime-node 1.30
RUNNER = Path(__file__).resolve().parent / "transformers_js.cjs"
COMPONENTS = ("text_encoder", "decoder_model_merged", "encodec_decode")


def install_dir() -> Path:
    """Where the pinned transformers.js is (or will be) installed."""
    root = os.environ.get("MGLAB_NODE_CACHE") or Path.home() / ".cache" / "mglab" / "node"
    return Path(root) / f"transformers-js-{VERSION}"


def missing_node() -> str | None:
    """Why transformers.js cannot run here (``node`` or ``npm`` not on PATH), or None."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed: transformers.js (Node) is not run"
    return None


def installed(folder: Path | None = None) -> bool:
    """Whether the pinned version is installed in ``folder`` (a stamp written once npm succeeded)."""
    folder = Path(folder or install_dir())
    return (folder / "installed.txt").is_file() and (folder / "installed.txt").read_text().strip() == VERSION


def registry_reachable(timeout: float = 20) -> bool:
    """Whether ``npm ping`` reaches the package registry within ``timeout`` seconds."""
    try:
        return subprocess.run(["npm", "ping"], capture_output=True, timeout=timeout).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def install(folder: Path | None = None, timeout: float = 600) -> Path:
    """``npm install --ignore-scripts @huggingface/transformers@VERSION`` into ``folder`` unless it is there;
    returns the folder."""
    folder = Path(folder or install_dir())
    if installed(folder):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "package.json").write_text(json.dumps({"private": True, "description": "mglab's peer benchmark"}))
    subprocess.run(["npm", "install", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error",
                    f"@huggingface/transformers@{VERSION}"], cwd=folder, check=True, timeout=timeout)
    (folder / "installed.txt").write_text(VERSION + "\n")
    return folder


def model_view(model: Path, root: Path, name: str = "model") -> Path:
    """``root/name``: the model's files linked, with a ``config.json`` whose decoder carries its pad and bos
    ids as Xenova's does (an export's config may leave out values equal to the class defaults: 2048, the
    decoder's vocabulary size, for musicgen-small). Returns the folder."""
    model, view = Path(model).resolve(), Path(root) / name
    view.mkdir(parents=True, exist_ok=True)
    for entry in model.iterdir():
        if entry.name != "config.json" and not (view / entry.name).exists():
            (view / entry.name).symlink_to(entry)
    config = json.loads((model / "config.json").read_text())
    generation = json.loads((model / "generation_config.json").read_text())
    decoder = config.setdefault("decoder", {})
    start = decoder.get("vocab_size", 2048)
    for key in ("pad_token_id", "bos_token_id"):
        if decoder.get(key) is None:
            decoder[key] = generation.get(key) if generation.get(key) is not None else start
    decoder.setdefault("num_codebooks", 4)
    (view / "config.json").write_text(json.dumps(config, indent=2))
    return view


def run(model_view_dir: Path, dtype: dict, tasks: list[dict], threads: int | None = None,
        folder: Path | None = None, timeout: float = 3600) -> dict:
    """Run ``tasks`` (see ``transformers_js.cjs``) on one loaded model: ``{versions, load_s, results}``.
    ``threads`` sets ONNX Runtime's intra-op threads (None: its default, the physical cores)."""
    folder = install(folder)
    view = Path(model_view_dir)
    job = {"package_dir": str(folder), "model_root": str(view.parent), "model_name": view.name,
           "dtype": dtype, "threads": threads, "tasks": tasks}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(job, f)
    try:
        done = subprocess.run(["node", str(RUNNER), f.name], capture_output=True, text=True, timeout=timeout)
    finally:
        os.unlink(f.name)
    if done.returncode != 0:
        raise RuntimeError(f"transformers.js failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def end_pad_frames(shape) -> np.ndarray:
    """Where transformers.js may part from transformers and mglab: ``[B, K, frames]``, True on codebook k's
    last k - 1 frames. transformers.js (4.3.2, ``prepare_inputs_for_generation``) forces the delay pattern's pads
    at the start only, not the end: in the last K - 1 steps it feeds the early codebooks' sampled tokens back
    where transformers feeds pads, and those inputs reach the later codebooks' last frames."""
    batch, books, frames = shape
    f, k = np.arange(frames)[None, :], np.arange(books)[:, None]
    return np.broadcast_to(f >= frames + 1 - k, (batch, books, frames))


def read_outputs(out: str, result: dict) -> tuple[np.ndarray, np.ndarray]:
    """Codes ``[B, K, frames]`` (int64) and audio ``[B, C, samples]`` a ``generate`` task wrote to ``out``."""
    codes = np.fromfile(out + ".codes", dtype=np.int32).reshape(result["codes_shape"]).astype(np.int64)
    audio = np.fromfile(out + ".audio", dtype=np.float32).reshape(result["audio_shape"])
    return codes, audio


def generate(model_view_dir: Path, dtype: dict, prompts: list[str], max_new_tokens: int,
             guidance_scale: float = 3.0, **kw) -> dict:
    """Greedy codes and audio of ``prompts`` from transformers.js: ``{codes, audio, input_ids, versions}``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "gen")
        task = {"kind": "generate", "prompts": prompts, "max_new_tokens": max_new_tokens,
                "guidance_scale": guidance_scale, "out": out}
        done = run(model_view_dir, dtype, [task], **kw)
        codes, audio = read_outputs(out, done["results"][0])
    return {"codes": codes, "audio": audio, "input_ids": np.array(done["results"][0]["input_ids"]),
            "versions": done["versions"]}
