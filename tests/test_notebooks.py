"""Every notebook runs with papermill on the tiny model; its metrics and figures are checked."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import ROOT, TINY

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert "parameters" in code[0].get("metadata", {}).get("tags", []), "the first code cell must be parameters"
    for cell in code:
        assert not cell.get("outputs") and cell.get("execution_count") is None, "strip outputs before committing"


def run(name: str, tmp_path: Path, **params) -> dict:
    import papermill as pm

    pm.execute_notebook(str(ROOT / "notebooks" / name), str(tmp_path / name), kernel_name="python3",
                        cwd=str(ROOT / "notebooks"), progress_bar=False,
                        parameters={"model": str(TINY), "out_dir": str(tmp_path), **params})
    return json.loads((tmp_path / "metrics.json").read_text())


def test_quickstart(tmp_path):
    m = run("00_quickstart.ipynb", tmp_path, prompt="ambient pad", duration=1.5, seed=4)
    assert m["frames"] == round(1.5 * 50) and m["steps"] == m["frames"] + m["codebooks"] - 1
    for f in m["files"]:
        assert (tmp_path / f).stat().st_size > 0, f
    audio, sr = sf.read(tmp_path / "quickstart.wav")
    assert sr == m["sample_rate"] and len(audio) == m["frames"] * 640
    assert np.abs(audio).max() == pytest.approx(m["peak"], rel=1e-5)
