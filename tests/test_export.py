"""``python -m mglab export``: a transformers checkpoint -> the Xenova layout plus ``encodec_encode.onnx``; the
export generates what the bundled tiny model (same weights) generates, and continues audio; bad arguments are
refused before any work."""

import json
import subprocess
import sys

import numpy as np
import pytest
from helpers import PROMPTS, ROOT, TINY


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "tiny"
    run = subprocess.run([sys.executable, "-m", "mglab", "export", str(TINY / "pytorch"), str(out),
                          "--dtypes", "fp32,q8"], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "mglab export: exporting" in run.stderr and run.stdout.strip() == str(out)
    return out


def test_the_layout_is_xenovas_with_an_encoder(exported):
    names = {p.name for p in (exported / "onnx").iterdir()}
    for graph in ("text_encoder", "decoder_model", "decoder_with_past_model", "decoder_model_merged",
                  "encodec_decode"):
        assert {f"{graph}.onnx", f"{graph}_quantized.onnx"} <= names
    assert {"encodec_encode.onnx", "build_delay_pattern_mask.onnx"} <= names
    for name in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"):
        assert (exported / name).is_file()
    assert not [p for p in exported.parent.iterdir() if p.name.startswith(".")]       # no temporary left


def test_the_export_generates_and_continues_like_the_bundled_model(exported, merged_model):
    import mglab

    ours = mglab.load(exported, decoder="merged")
    a = ours.generate(PROMPTS, max_new_tokens=16, do_sample=False)
    b = merged_model.generate(PROMPTS, max_new_tokens=16, do_sample=False)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    audio = np.sin(np.linspace(0, 300, 3200, dtype=np.float32))[None, None]          # [1, 1, samples]
    c = ours.generate(PROMPTS, audio=audio, max_new_tokens=8, do_sample=False)
    d = merged_model.generate(PROMPTS, audio=audio, max_new_tokens=8, do_sample=False)
    np.testing.assert_array_equal(c.tokens, d.tokens)
    q8 = mglab.load(exported, dtype="q8")
    assert q8.generate("lofi piano", max_new_tokens=8).codes.shape == (1, 4, 5)


def test_bad_arguments_are_refused_before_any_work(tmp_path):
    from mglab.onnx.export import export

    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(FileExistsError, match="is not empty: pass --force"):
        export(TINY / "pytorch", tmp_path / "full")
    not_musicgen = tmp_path / "t5"
    not_musicgen.mkdir()
    (not_musicgen / "config.json").write_text(json.dumps({"model_type": "t5"}))
    with pytest.raises(ValueError, match="is not a MusicGen checkpoint: its config.json has model_type='t5'"):
        export(not_musicgen, tmp_path / "o1")
    with pytest.raises(ValueError, match="has no config.json"):
        export(tmp_path / "full", tmp_path / "o2")
    with pytest.raises(ValueError, match="each must be one of"):
        export(TINY / "pytorch", tmp_path / "o3", dtypes="fp32,q9")
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()
    run = subprocess.run([sys.executable, "-m", "mglab", "export", str(not_musicgen), str(tmp_path / "o4")],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 2 and "not a MusicGen checkpoint" in run.stderr


def test_a_hub_id_downloads_only_config_weights_and_tokenizer(monkeypatch, tmp_path):
    """No Hub here: snapshot_download is replaced by one that records its arguments and hands back a folder."""
    import huggingface_hub

    from mglab.onnx import export as ex

    asked = {}

    def fake(repo_id, allow_patterns=None, **kw):
        asked.update(repo_id=repo_id, allow_patterns=allow_patterns)
        return str(TINY / "pytorch")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    assert ex.source("facebook/musicgen-small") == TINY / "pytorch"
    assert asked["repo_id"] == "facebook/musicgen-small"
    assert set(asked["allow_patterns"]) >= {"config.json", "*.safetensors", "*.json"}
    assert not any(p.endswith((".onnx", ".bin.index", ".msgpack", ".h5")) for p in asked["allow_patterns"])
    with pytest.raises(ValueError, match="neither a checkpoint folder nor a Hub id"):
        ex.source("no/such/deep/path")


def _digest(folder):
    import hashlib

    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("where", ["out contains src", "out is src", "out inside src", "out links to the layout",
                                   "out is src, no --force"])
def test_force_never_replaces_the_source(tmp_path, where):
    """Defect: ``export SRC OUT --force`` removed OUT before reading SRC, so an OUT holding SRC (the bundled layout,
    where ``pytorch/`` sits in the export folder) or equal to it lost the weights. Refused up front now, with
    every file of the checkpoint left as it was (compared byte for byte) and nothing written."""
    import shutil

    layout = tmp_path / "tiny"
    shutil.copytree(TINY / "pytorch", layout / "pytorch")
    (layout / "config.json").write_text("{}")                       # an old export's file beside it
    src = layout / "pytorch"
    (tmp_path / "link").symlink_to(layout)                          # the same folder under another name
    out = {"out contains src": layout, "out is src": src, "out inside src": src / "onnx-export",
           "out links to the layout": tmp_path / "link", "out is src, no --force": src}[where]
    force = [] if "no --force" in where else ["--force"]
    before = _digest(layout)
    run = subprocess.run([sys.executable, "-m", "mglab", "export", str(src), str(out), *force],
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert run.returncode != 0
    assert "OUT=" in run.stderr and "SRC=" in run.stderr and "its own input" in run.stderr
    assert "pass --force" not in run.stderr
    assert _digest(layout) == before
    assert [p.name for p in layout.iterdir() if p.name.startswith(".")] == []
