"""The bundled nano-magnet: its graphs are ``python -m mglab export`` of its checkpoint, and they compute what the
training computed (the training's own forward, ``scripts/nano_magnet.py``, with its padded-text patch) on padded
prompts at every stage; the null condition as the training fed it."""

import json
import sys

import numpy as np
import pytest
from helpers import ROOT

import mglab
from mglab.onnx.audiocraft_env import install

NANO_MAGNET = ROOT / "data" / "models" / "nano-magnet"
sys.path.insert(0, str(ROOT / "scripts"))
install()                                           # audiocraft imports xformers etc. at import
pytest.importorskip("audiocraft")


@pytest.fixture(scope="module")
def trained():
    import nano_magnet

    return nano_magnet.load(NANO_MAGNET / "audiocraft"), mglab.load(NANO_MAGNET)


def test_the_bundle_is_the_export_of_its_checkpoint(tmp_path):
    from mglab.cli import main

    out = tmp_path / "out"
    assert main(["export", str(NANO_MAGNET / "audiocraft"), str(out)]) == 0
    for f in sorted((NANO_MAGNET / "onnx").iterdir()):
        assert (out / "onnx" / f.name).read_bytes() == f.read_bytes(), f.name
    import bundle_nano_magnet

    exported = json.loads((out / "config.json").read_text())                # + the bundle's defaults
    exported["generation"]["mask_temperature"] = bundle_nano_magnet.MASK_TEMPERATURE
    exported["vamp"] = bundle_nano_magnet.VAMP
    assert json.loads((NANO_MAGNET / "config.json").read_text()) == exported
    size = sum(p.stat().st_size for p in NANO_MAGNET.rglob("*") if p.is_file())
    assert size <= 20_000_000                                             # the limit
    card = (NANO_MAGNET / "README.md").read_text()
    for heading in ("## What it is", "## Data", "## Training", "## Scores", "## Limits"):
        assert heading in card
    assert "synthetic" in card.lower()


def test_the_bundle_script_writes_the_shipped_config(tmp_path):
    """``bundle_nano_magnet.bundle`` on the bundle's checkpoint writes the config.json that ships (its mask
    temperature and vamp block included) and the same graphs."""
    import shutil

    import bundle_nano_magnet

    ckpt = tmp_path / "ckpt"
    shutil.copytree(NANO_MAGNET / "audiocraft", ckpt)
    shutil.copy(NANO_MAGNET / "training.json", ckpt / "training.json")
    out = bundle_nano_magnet.bundle(ckpt, tmp_path / "bundle")
    shipped = json.loads((NANO_MAGNET / "config.json").read_text())
    assert json.loads((out / "config.json").read_text()) == shipped and shipped["vamp"] == {"temperature": 1.0}
    for f in sorted((NANO_MAGNET / "onnx").iterdir()):
        assert (out / "onnx" / f.name).read_bytes() == f.read_bytes(), f.name


@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_the_graph_computes_what_training_computed(trained, stage):
    import nano_magnet
    import torch

    lm, model = trained
    prompts = ["a slow low organ melody in d minor", "flute", None]          # padded, and the null condition
    codes = np.random.default_rng(stage).integers(0, 65, (3, 4, 60))         # some masked (64)
    with torch.no_grad():
        ref = nano_magnet.forward(lm, torch.from_numpy(codes), nano_magnet.conditions(lm, prompts),
                                  torch.full((3,), stage)).numpy()            # [3, K, T, card]
    hidden, mask, _ = model._condition(prompts[:2], 2, mglab.masked_model.masked.no_hooks)   # [4, n, d]: null last
    rows = [0, 1, 2]                                                           # the prompts, then one null row
    ours = model.lm.logits(codes, hidden[rows], mask[rows], stage)
    assert np.abs(ours - ref).max() <= 1e-4
