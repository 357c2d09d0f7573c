"""What the benchmarks share: timing, a fresh optimized-graph cache per row, worker processes, markdown tables,
JSON out."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np


def timed(fn) -> float:
    """Seconds ``fn()`` takes."""
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def step_times(model, steps: int, prompt: str = "lofi piano", **kw) -> list[float]:
    """Wall time of each decoding step of a greedy guided ``generate`` (a hook on a step's last point
    stamps the clock)."""
    stamps = [time.perf_counter()]
    model.generate(prompt, max_new_tokens=steps, do_sample=False, guidance_scale=3.0,
                   hooks=[("delay.hook_tokens", lambda v, h: stamps.append(time.perf_counter()))], **kw)
    return list(np.diff(stamps))


def step_times_transformers(torch_model, ids, mask, steps: int) -> list[float]:
    """Each step's seconds in transformers' greedy guided ``generate`` (a logits processor stamps the clock)."""
    import torch
    from transformers import LogitsProcessor, LogitsProcessorList

    stamps = [time.perf_counter()]

    class Stamp(LogitsProcessor):
        def __call__(self, input_ids, scores):
            stamps.append(time.perf_counter())
            return scores

    with torch.no_grad():
        torch_model.generate(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                             max_new_tokens=steps, do_sample=False, guidance_scale=3.0,
                             logits_processor=LogitsProcessorList([Stamp()]))
    return list(np.diff(stamps))


def model_at(commit: str, folder: str = "data/models/nano-musicgen") -> Path:
    """``folder`` of this repository as committed at ``commit`` (``git archive``), kept under
    ``$MGLAB_CACHE/models-at/<full sha>/`` (default ``~/.cache/mglab``): the model a card compares with when the
    bundle has moved on since (nano-magnet's parent, nano-musicgen at a13b50d). Written to a temporary folder,
    then renamed. Raises ``ValueError`` naming the commit where git cannot give the folder."""
    import io
    import subprocess
    import tarfile

    root = Path(__file__).resolve().parents[1]

    def git(*args) -> bytes:
        run = subprocess.run(["git", "-C", str(root), *args], capture_output=True)
        if run.returncode:
            raise ValueError(f"commit {commit!r}: git cannot give {folder} there ({run.stderr.decode().strip()})")
        return run.stdout

    sha = git("rev-parse", "--verify", "--end-of-options", f"{commit}^{{commit}}").decode().strip()   # not a name
    cache = Path(os.environ.get("MGLAB_CACHE", Path.home() / ".cache" / "mglab")) / "models-at" / sha
    if (cache / folder).is_dir():
        return cache / folder
    data = git("archive", "--format=tar", sha, "--", folder)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cache.parent, prefix=f".{sha}."))
    try:
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            tar.extractall(tmp, filter="data")
        tmp.rename(cache)
    except OSError:
        if not (cache / folder).is_dir():                     # not another process that got there first
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return cache / folder


@contextmanager
def fresh_cache():
    """``$MGLAB_CACHE`` pointed at a new empty folder for the block (a row's cold first load owes nothing to
    the rows before it), removed afterwards; the old value is put back."""
    old = os.environ.get("MGLAB_CACHE")
    folder = tempfile.mkdtemp(prefix="mglab-bench-cache-")
    os.environ["MGLAB_CACHE"] = folder
    try:
        yield Path(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if old is None:
            os.environ.pop("MGLAB_CACHE", None)
        else:
            os.environ["MGLAB_CACHE"] = old


def process_pool(workers: int, initializer, initargs: tuple = ()) -> ProcessPoolExecutor:
    """``workers`` processes started by spawn (no forked ONNX Runtime threads), each running ``initializer``.

    Not ``multiprocessing.Pool``: its ``map`` waits forever when a worker dies (a segfault in native code, such
    as a stale numba cache of librosa's pyin), where this one's raises ``BrokenProcessPool``.
    """
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=initializer,
                               initargs=initargs)


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A markdown table of ``rows`` under ``header``."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_json(path: Path, result: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
