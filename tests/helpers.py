"""What several test files share: the repository's paths, the bundled model, prompts, torch conversion."""

import functools
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "data" / "models" / "tiny-musicgen"
PROMPTS = ["lofi piano with soft drums", "rock"]   # different lengths: exercises padding


def as_torch(*arrays):
    import torch
    return [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]


def transformers_streamed(torch_model, ids, mask, **kwargs):
    """transformers' ``generate`` on ``ids``/``mask``: its audio and what its streamer saw, ``[B*K, L]`` (the
    start ids, then each step's tokens; pads not yet forced)."""
    import torch

    steps = []

    class Recorder:  # transformers' streamer API: put() receives the start ids, then each step's tokens
        def put(self, value):
            steps.append(value.reshape(-1, 1) if value.ndim == 1 else value)

        def end(self):
            pass

    ids_t, mask_t = as_torch(ids, mask)
    with torch.no_grad():
        audio = torch_model.generate(input_ids=ids_t, attention_mask=mask_t, streamer=Recorder(), **kwargs)
    return audio.numpy(), torch.cat(steps, dim=-1)


# ``make docs``' command (the Makefile's DOCS_BUILD, after ``$(PY)``; tests/test_docs.py keeps the two equal)
DOCS_BUILD = ["-m", "sphinx", "-E", "-W", "--keep-going", "-n", "-q", "-b", "html", "docs", "docs/_build/html"]


@functools.cache
def build_site() -> Path:
    """Build the documentation as ``make docs`` does, once a session; ``docs/_build/html``. Its notebook gallery
    takes the executed copies the notebook tests left (tests/conftest.py runs the tests that need the site
    last)."""
    import subprocess
    import sys

    run = subprocess.run([sys.executable, *DOCS_BUILD], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, (run.stdout + run.stderr)[-5000:]
    return ROOT / "docs" / "_build" / "html"
