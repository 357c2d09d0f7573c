"""What several test files share: the repository's paths, the bundled model, prompts, torch conversion."""

from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "data" / "models" / "tiny-musicgen"
PROMPTS = ["lofi piano with soft drums", "rock"]   # different lengths: exercises padding


def as_torch(*arrays):
    import torch
    return [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]
