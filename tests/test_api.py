"""Loading, settings, saving and the command line."""

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from helpers import ROOT

import mglab


def test_duration_gives_exact_frames(merged_model):
    for d in [0.3, 1.0, 1.27]:
        g = merged_model.generate("lofi", duration=d, seed=0)
        assert g.codes.shape == (1, 4, round(d * 50))
        assert g.tokens.shape == (1, 4, round(d * 50) + 4)
        assert g.audio.shape == (1, 1, round(d * 50) * 640) and g.audio.dtype == np.float32
        assert g.codes.dtype == np.int64


def test_defaults_come_from_generation_config(merged_model):
    g = merged_model.generate("lofi", seed=0)
    assert g.settings["max_new_tokens"] == 256 - 1          # generation_config max_length 256
    assert g.settings["guidance_scale"] == 3.0 and g.settings["do_sample"] is True
    assert g.settings["top_k"] == 50                          # transformers' default, not in the json


def test_both_layouts_and_flat_layout_agree(tiny_path, tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for f in ["config.json", "generation_config.json", "tokenizer.json"]:
        (flat / f).write_bytes((tiny_path / f).read_bytes())
    for f in (tiny_path / "onnx").glob("*.onnx"):
        (flat / f.name).symlink_to(f)
    runs = [mglab.load(p, decoder=d).generate("jazz", max_new_tokens=16, seed=1)
            for p in (tiny_path, flat) for d in ("merged", "split")]
    for g in runs[1:]:
        np.testing.assert_array_equal(g.tokens, runs[0].tokens)


def test_bad_load_arguments(tiny_path, tmp_path):
    with pytest.raises(ValueError, match="dtype='fp64'"):
        mglab.load(tiny_path, dtype="fp64")
    with pytest.raises(ValueError, match="decoder='fused'"):
        mglab.load(tiny_path, decoder="fused")
    with pytest.raises(FileNotFoundError, match="no such model folder"):
        mglab.load(tmp_path / "nope")


def test_save_is_atomic_and_per_prompt(merged_model, tmp_path):
    g = merged_model.generate(["a", "b"], duration=0.2, seed=0)
    paths = g.save(tmp_path / "out.wav")
    assert [p.name for p in paths] == ["out-0.wav", "out-1.wav"]
    audio, sr = sf.read(paths[1], dtype="float32")
    assert sr == 32000 and np.allclose(audio, g.audio[1, 0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out-0.wav", "out-1.wav", "out.json", "out.npz"]
    back = mglab.Generation.load(tmp_path / "out.wav")                     # what save wrote, read back
    np.testing.assert_array_equal(back.audio, g.audio)
    np.testing.assert_array_equal(back.codes, g.codes)
    np.testing.assert_array_equal(back.tokens, g.tokens)
    assert back.prompts == g.prompts and back.settings == g.settings and back.model == g.model
    with pytest.raises(FileNotFoundError, match="does not exist"):
        g.save(tmp_path / "missing" / "x.wav")
    assert "<audio controls" in g._repr_html_()


def test_cli_writes_a_wav(tiny_path, tmp_path):
    out = tmp_path / "out.wav"
    res = subprocess.run([sys.executable, "-m", "mglab", "generate", "lofi piano", "--duration", "0.5",
                          "--model", str(tiny_path), "--out", str(out), "--seed", "0"],
                         capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    assert "decoding" in res.stderr            # the progress bar
    audio, sr = sf.read(out)
    assert sr == 32000 and len(audio) == 25 * 640


def test_cli_continues_an_audio_file(tiny_path, tmp_path):
    sf.write(tmp_path / "take.wav", np.sin(np.linspace(0, 400, 6400)).astype(np.float32), 32000)    # 10 frames
    out = tmp_path / "more.wav"
    res = subprocess.run([sys.executable, "-m", "mglab", "generate", "lofi piano", "--duration", "0.5", "--model",
                          str(tiny_path), "--out", str(out), "--seed", "0", "--audio", str(tmp_path / "take.wav"),
                          "--no-progress"], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    audio, _ = sf.read(out)
    assert len(audio) == (10 + 25) * 640                        # the prompt's frames, then the new ones
    import json
    assert json.loads(out.with_suffix(".json").read_text())["prompt_frames"] == 10
