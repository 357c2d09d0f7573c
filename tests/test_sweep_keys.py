"""What a sweep row's key stands for: the model as loaded (every file it read), the settings as generate resolves
them, hooks and record across processes, and measurements of stored rows. Each test failed before its fix."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from helpers import ROOT, TINY

import mglab
from mglab.audio import evaluate

NANO = ROOT / "data" / "models" / "nano-musicgen"
KW = dict(max_new_tokens=12, client=False, progress=False)


@pytest.fixture
def copy(tmp_path):
    dst = tmp_path / "tiny"
    shutil.copytree(TINY, dst, ignore=shutil.ignore_patterns("pytorch"))
    return dst


def test_a_changed_generation_config_is_another_row(copy, tmp_path):
    """Defect: the key hashed the graphs only, so greedy decoding set in generation_config.json returned the old
    sampled rows. Now the settings as generate resolves them (and the file itself) are in the key."""
    grid = {"prompt": ["lofi piano"], "seed": [0]}
    first = mglab.sweep(mglab.load(copy), grid, tmp_path / "out", evaluate=False, **KW)
    config = json.loads((copy / "generation_config.json").read_text())
    (copy / "generation_config.json").write_text(json.dumps({**config, "do_sample": False, "guidance_scale": 1.0}))
    greedy = mglab.load(copy)
    second = mglab.sweep(greedy, grid, tmp_path / "out", evaluate=False, **KW)
    assert second["row"][0] != first["row"][0]
    expected = greedy.generate("lofi piano", max_new_tokens=12, seed=0)
    assert expected.settings["do_sample"] is False
    np.testing.assert_array_equal(mglab.Generation.load(second["wav"][0]).codes, expected.codes)
    assert (mglab.Generation.load(second["wav"][0]).codes != mglab.Generation.load(first["wav"][0]).codes).any()


def test_the_provenance_is_what_was_loaded(copy, tmp_path):
    """Defect: provenance hashed the files when first asked, so a decoder re-exported after loading put the old
    weights' rows under the new file's hash. Hashed at load now: the loaded model keeps its own key, and a model
    loaded from the new file gets another and its own tokens."""
    import hashlib

    old = mglab.load(copy, decoder="merged")
    merged = copy / "onnx" / "decoder_model_merged.onnx"
    shutil.copy(copy / "onnx" / "decoder_model_merged_quantized.onnx", merged)     # a re-export, other weights
    loaded = hashlib.sha256((TINY / "onnx" / "decoder_model_merged.onnx").read_bytes()).hexdigest()
    assert old.provenance()["components"]["decoder_model_merged"]["sha256"] == loaded     # first asked after
    grid = {"prompt": ["rock"], "seed": [3]}
    a = mglab.sweep(old, grid, tmp_path / "out", evaluate=False, **KW)
    new = mglab.load(copy, decoder="merged")
    assert new.provenance()["components"]["decoder_model_merged"]["sha256"] != \
        old.provenance()["components"]["decoder_model_merged"]["sha256"]
    b = mglab.sweep(new, grid, tmp_path / "out", evaluate=False, **KW)
    assert a["row"][0] != b["row"][0]
    np.testing.assert_array_equal(mglab.Generation.load(b["wav"][0]).codes,
                                  new.generate("rock", max_new_tokens=12, seed=3).codes)
    assert set(old.provenance()["files"]) == {"config.json", "generation_config.json", "tokenizer.json"}


SCRIPT = """
import sys, numpy as np, mglab
scale = float(sys.argv[2])
def nudge(tokens, hook, by=scale):
    return np.minimum(tokens + int(by), 127)
df = mglab.sweep(mglab.load(sys.argv[1]), {"prompt": ["lofi piano", "rock"]}, sys.argv[3], client=False,
                 progress=False, evaluate=False, max_new_tokens=12, seed=0,
                 hooks=[("sampler.hook_tokens", nudge)], record=lambda name: name == "guidance.hook_logits")
print(",".join(df["row"]))
"""


def test_callable_hooks_and_record_resume_in_another_process(tmp_path):
    """Defect: the key hashed repr() of hooks and record, which holds memory addresses, so no rerun ever found its
    rows. Identified by name, source and closed-over values now: a second process finds them, and another value
    in the hook's defaults is another row."""
    script = tmp_path / "s.py"
    script.write_text(SCRIPT)
    run = lambda scale: subprocess.run([sys.executable, str(script), str(TINY), scale, str(tmp_path / "out")],  # noqa: E731
                                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    first, second, other = run("1"), run("1"), run("2")
    assert first.returncode == 0, first.stderr[-2000:]
    keys = first.stdout.strip().splitlines()[-1]
    assert second.stdout.strip().splitlines()[-1] == keys
    assert other.stdout.strip().splitlines()[-1] != keys
    assert len(list((tmp_path / "out" / "rows").glob("*.row.json"))) == 4          # 2 rows x 2 hook values


def test_stored_rows_are_measured_when_asked(merged_model, tmp_path):
    """Defect: evaluate was not in the key and stored rows came back without measurements. They are measured
    from their WAV now (not generated again)."""
    grid = {"prompt": ["lofi piano", "rock"], "seed": [1]}
    plain = mglab.sweep(merged_model, grid, tmp_path, evaluate=False, **KW)
    assert "register" not in plain.columns
    stamps = {w: (tmp_path / "rows" / w).stat().st_mtime_ns for w in plain["wav"]}
    measured = mglab.sweep(merged_model, grid, tmp_path, evaluate=True, **KW)
    assert list(measured["row"]) == list(plain["row"])
    assert {w: (tmp_path / "rows" / w).stat().st_mtime_ns for w in plain["wav"]} == stamps
    for _, row in measured.iterrows():
        _same_measurements(row, mglab.Generation.load(row["wav"]))


def test_each_row_of_a_batch_has_its_own_measurements(tmp_path):
    """Two prompts in one batch on the nano model: each row's measurement columns equal ``evaluate.measure`` of
    its own WAV (with every row given the first prompt's, as a planted bug did, this fails: the rows differ)."""
    model = mglab.load(NANO)
    grid = {"prompt": ["a fast high flute scale", "a slow low organ melody"]}
    df = mglab.sweep(model, grid, tmp_path, duration=1.5, seed=0, client=False, progress=False, batch_size=2)
    assert len(df) == 2 and (df["status"] == "ok").all()
    heard = []
    for _, row in df.iterrows():
        heard.append(_same_measurements(row, mglab.Generation.load(row["wav"])))
    assert heard[0] != heard[1]


def _same_measurements(row, gen) -> dict:
    expected = evaluate.measure(gen.audio[0], gen.sample_rate)
    expected["abstained"] = "; ".join(f"{k}: {why}" for k, why in expected["abstained"].items())
    for name, value in expected.items():
        value = ", ".join(value) if isinstance(value, list) else value
        got = row[name]
        if value is None or (isinstance(value, float) and np.isnan(value)):
            assert got is None or pd.isna(got), (name, got)
        elif isinstance(value, float):
            assert got == pytest.approx(value, rel=1e-9, abs=1e-12), (name, got, value)
        else:
            assert got == value, (name, got, value)
    return {k: str(v) for k, v in expected.items()}


def test_a_path_is_loaded_and_anything_else_is_a_type_error(tmp_path):
    """``mglab.sweep`` takes what ``mglab.load`` takes (it died with AttributeError on a path)."""
    df = mglab.sweep(str(TINY), {"prompt": ["rock"], "seed": [0]}, tmp_path, evaluate=False, **KW)
    np.testing.assert_array_equal(mglab.Generation.load(df["wav"][0]).codes,
                                  mglab.load(TINY).generate("rock", max_new_tokens=12, seed=0).codes)
    with pytest.raises(TypeError, match="model=42 is not allowed"):
        mglab.sweep(42, {"prompt": ["rock"]}, tmp_path / "x", **KW)


def test_fingerprints_follow_what_a_hook_does(tmp_path):
    """Closed-over values, callable objects' state, bound methods and the plain globals a function reads make
    different keys; a list a hook records into does not (it would change the key as it grows)."""
    from mglab.core.fingerprint import fingerprint

    def make(scale):
        return lambda x, h: x * scale

    class Shift:
        def __init__(self, by):
            self.by = by

        def __call__(self, x, h):
            return x + self.by

        def method(self, x, h):
            return x + self.by

    seen = []

    def record(x, h):
        seen.append(x)

    keys = lambda f: json.dumps(fingerprint(f), sort_keys=True, default=str)               # noqa: E731
    assert keys(make(1.0)) == keys(make(1.0)) != keys(make(2.0))
    assert keys(Shift(0)) == keys(Shift(0)) != keys(Shift(50))
    assert keys(Shift(0).method) != keys(Shift(50).method)
    before = keys(record)
    seen.append(1)
    assert keys(record) == before
    namespace = {"np": np}
    exec("VECTOR = np.ones(3)\ndef steer(x, h):\n    return x + VECTOR\n", namespace)
    first = keys(namespace["steer"])
    namespace["VECTOR"] = np.zeros(3)
    assert keys(namespace["steer"]) != first
    assert "0x" not in keys(make(1.0)) and "0x" not in keys(Shift(0))


def test_hook_steps_is_part_of_the_key(merged_model, tmp_path):
    """``hook_steps`` goes through a sweep to ``generate`` and into the key (the sweep refused it)."""
    force = lambda tokens, hook: np.zeros_like(tokens)                                      # noqa: E731
    kw = dict(client=False, progress=False, evaluate=False, max_new_tokens=12, seed=0,
              hooks=[("sampler.hook_tokens", force)])
    a = mglab.sweep(merged_model, {"prompt": ["rock"]}, tmp_path, hook_steps=slice(0, 3), **kw)
    b = mglab.sweep(merged_model, {"prompt": ["rock"]}, tmp_path, hook_steps=slice(0, 6), **kw)
    assert a["row"][0] != b["row"][0]
    expected = merged_model.generate("rock", max_new_tokens=12, seed=0, hooks=kw["hooks"], hook_steps=slice(0, 6))
    np.testing.assert_array_equal(mglab.Generation.load(b["wav"][0]).codes, expected.codes)
