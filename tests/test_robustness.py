"""Bad input, non-finite logits, long form, streaming, Ctrl-C and reproducibility."""

import hashlib
import json
import math
import shutil

import numpy as np
import pytest

import mglab
from mglab.onnx.session import Session

TWO = ["lofi piano", "rock"]

# (kwargs for generate, words the message must contain)
BAD_GENERATE = [
    (dict(prompt=""), ["prompt[0]", "''", "non-empty string"]),
    (dict(prompt="   "), ["prompt[0]", "non-empty string"]),
    (dict(prompt=None), ["prompt", "None", "string or a non-empty list"]),
    (dict(prompt=123), ["prompt", "123", "string or a non-empty list"]),
    (dict(prompt=[]), ["prompt", "[]", "non-empty list"]),
    (dict(prompt=["ok", ""]), ["prompt[1]", "''", "non-empty string"]),
    (dict(prompt=["ok", 3]), ["prompt[1]", "3", "non-empty string"]),
    (dict(guidance_scale=-1), ["guidance_scale", "-1", ">= 0"]),
    (dict(guidance_scale=math.nan), ["guidance_scale", "nan", ">= 0"]),
    (dict(guidance_scale=math.inf), ["guidance_scale", "inf", "finite"]),
    (dict(guidance_scale="3"), ["guidance_scale", "'3'", "number"]),
    (dict(temperature=0), ["temperature", "0", "> 0"]),
    (dict(temperature=-0.5), ["temperature", "-0.5", "> 0"]),
    (dict(temperature=math.nan), ["temperature", "nan", "> 0"]),
    (dict(top_k=-1), ["top_k", "-1", "[0, 128]"]),
    (dict(top_k=129), ["top_k", "129", "[0, 128]"]),
    (dict(top_k=2.5), ["top_k", "2.5", "integer"]),
    (dict(top_p=-0.1), ["top_p", "-0.1", "[0, 1]"]),
    (dict(top_p=1.5), ["top_p", "1.5", "[0, 1]"]),
    (dict(top_p=math.nan), ["top_p", "nan", "[0, 1]"]),
    (dict(duration=0), ["duration", "0", "> 0"]),
    (dict(duration=-1), ["duration", "-1", "> 0"]),
    (dict(duration=math.nan), ["duration", "nan", "> 0"]),
    (dict(duration="2"), ["duration", "'2'", "> 0"]),
    (dict(duration=1, max_new_tokens=10), ["duration=1", "max_new_tokens=10", "not both"]),
    (dict(max_new_tokens=3), ["max_new_tokens", "3", ">= 4"]),
    (dict(max_new_tokens=2.5), ["max_new_tokens", "2.5", "integer"]),
    (dict(seed=1.5), ["seed", "1.5", "non-negative integer"]),
    (dict(seed="x"), ["seed", "'x'", "non-negative integer"]),
    (dict(seed=-1), ["seed", "-1", "non-negative integer"]),
    (dict(prompt=TWO, seed=[1]), ["seed", "[1]", "one per prompt (2)"]),
    (dict(do_sample="yes"), ["do_sample", "'yes'", "True or False"]),
    (dict(window=0.05), ["window", "0.05", "seconds >="]),
    (dict(window=2.0, extend_stride=2.0), ["extend_stride", "2.0", "(0, window=2)"]),
    (dict(on_nonfinite="ignore"), ["on_nonfinite", "'ignore'", "'raise' or 'replace'"]),
    (dict(hooks=[("guidance.hook_logit", print)]), ["guidance.hook_logit", "did you mean", "guidance.hook_logits"]),
    (dict(hooks=[print]), ["hooks", "(name_or_filter, fn)"]),
]


@pytest.fixture
def no_model_runs(monkeypatch):
    def refuse(self, feeds):
        raise AssertionError(f"{self.path.name} ran before the arguments were checked")
    monkeypatch.setattr(Session, "run", refuse)


@pytest.mark.parametrize("kwargs,words", BAD_GENERATE, ids=lambda v: str(v)[:60] if isinstance(v, dict) else "")
def test_bad_generate_arguments(merged_model, no_model_runs, kwargs, words):
    kwargs = {"prompt": "lofi", "max_new_tokens": 12, **kwargs}
    if "duration" in kwargs and kwargs.get("max_new_tokens") == 12:
        del kwargs["max_new_tokens"]
    with pytest.raises((ValueError, TypeError, KeyError)) as err:
        merged_model.generate(kwargs.pop("prompt"), **kwargs)
    for word in words:
        assert word in str(err.value), (word, str(err.value))


def test_bad_stream_arguments(merged_model, no_model_runs):
    with pytest.raises(ValueError, match=r"chunk_duration=0 is not allowed.*> 0"):
        merged_model.stream("a", chunk_duration=0)
    with pytest.raises(TypeError, match=r"unknown argument\(s\) \['topk'\]"):
        merged_model.stream("a", topk=5)


@pytest.fixture
def broken_copy(tmp_path, tiny_path):
    def make(edit):
        dst = tmp_path / "model"
        shutil.copytree(tiny_path, dst, ignore=shutil.ignore_patterns("pytorch"))
        edit(dst)
        return dst
    return make


def test_missing_onnx_file(broken_copy):
    path = broken_copy(lambda d: (d / "onnx" / "text_encoder.onnx").unlink())
    with pytest.raises(FileNotFoundError, match=r"text_encoder has no 'fp32' variant.*onnx/text_encoder.onnx.*"
                                                r"variants present: \['fp16', 'q8'\]"):
        mglab.load(path)


def test_truncated_onnx_file(broken_copy):
    def truncate(d):
        f = d / "onnx" / "decoder_model_merged.onnx"
        f.write_bytes(f.read_bytes()[:5000])
    with pytest.raises(ValueError, match=r"decoder_model_merged.onnx.*cannot be loaded.*truncated or corrupt"):
        mglab.load(broken_copy(truncate))


def test_config_disagreeing_with_the_graphs(broken_copy):
    def eight_codebooks(d):
        cfg = json.loads((d / "config.json").read_text())
        cfg["decoder"]["num_codebooks"] = 8
        (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="config.json says 8 codebooks but encodec_decode takes 4"):
        mglab.load(broken_copy(eight_codebooks))


def test_missing_config_and_folder(broken_copy, tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json is missing"):
        mglab.load(broken_copy(lambda d: (d / "config.json").unlink()))
    with pytest.raises(FileNotFoundError, match="no such model folder"):
        mglab.load(tmp_path / "absent")


def test_nonfinite_logits_name_the_step_and_codebook(merged_model):
    def poison(hidden, hook):
        hidden[1] = np.nan             # the second prompt's text: its conditional logits become NaN

    with pytest.raises(FloatingPointError, match=r"non-finite logits at step 0, prompt 1, codebook 0 "
                                                 r"\(conditional branch\).*on_nonfinite='replace'"):
        merged_model.generate(TWO, max_new_tokens=12, hooks=[("text_encoder.hook_hidden", poison)])
    g = merged_model.generate(TWO, max_new_tokens=12, seed=0, on_nonfinite="replace",
                              hooks=[("text_encoder.hook_hidden", poison)])
    assert np.isfinite(g.audio).all() and (g.codes < 128).all()


def test_all_tokens_removed_is_an_error(merged_model):
    def ban_all(logits, hook):
        logits[0, 2] = -np.inf
    with pytest.raises(FloatingPointError, match="no token left to choose at step 0, prompt 0, codebook 2"):
        merged_model.generate("a", max_new_tokens=12, hooks=[("guidance.hook_logits", ban_all)])


LONG = dict(duration=3.0, window=1.0, extend_stride=0.6, seed=0)


def test_long_form_crosses_windows_with_continuous_codes(merged_model):
    fed = []
    g = merged_model.generate(TWO, hooks=[("decoder.hook_input_ids",
                                           lambda v, h: fed.append((h.window, h.step, v.copy())))], **LONG)
    assert g.codes.shape == (2, 4, 150)
    windows = sorted({w for w, _, _ in fed})
    assert windows == [0, 1, 2, 3, 4]                       # 50 frames, then 4 x 30 new ones
    steps = [s for _, s, _ in fed]
    assert steps == list(range(len(steps)))                 # steps count on across windows
    # window w is prompted with the codes of frames [30w, 30w + 20): they are fed back exactly
    for w in windows[1:]:
        inputs = np.stack([v for win, _, v in fed if win == w], axis=-1)     # [B, K, steps of window]
        for k in range(4):
            np.testing.assert_array_equal(inputs[:, k, k + 1: k + 1 + 20], g.codes[:, k, 30 * w: 30 * w + 20])
    np.testing.assert_array_equal(mglab.decoding.patterns.undelay(g.tokens, merged_model.config.delays), g.codes)
    again = merged_model.generate(TWO, **LONG)
    np.testing.assert_array_equal(again.codes, g.codes)


def test_long_form_first_window_is_a_normal_generation(merged_model):
    g = merged_model.generate("lofi piano", **LONG)
    first = merged_model.generate("lofi piano", duration=1.0, seed=0)
    np.testing.assert_array_equal(g.codes[:, :, :50], first.codes)


def test_stream_matches_a_one_shot_decode(merged_model):
    steps_done = []
    chunks, seen_at = [], []
    for chunk in merged_model.stream(TWO, duration=3.0, seed=0, chunk_duration=0.5,
                                     hooks=[("delay.hook_tokens", lambda v, h: steps_done.append(h.step))]):
        chunks.append(chunk)
        seen_at.append(len(steps_done))
    full = merged_model.generate(TWO, duration=3.0, seed=0)
    joined = np.concatenate(chunks, axis=-1)
    assert joined.shape == full.audio.shape and len(chunks) >= 5
    assert np.abs(joined - full.audio).max() <= 1e-4
    assert seen_at[0] < len(steps_done) / 3                 # the first chunk came early


def test_stream_over_several_windows(merged_model):
    joined = np.concatenate(list(merged_model.stream("lofi", chunk_duration=0.4, **LONG)), axis=-1)
    full = merged_model.generate("lofi", **LONG)
    assert np.abs(joined - full.audio).max() <= 1e-4


def test_ctrl_c_stops_cleanly_and_leaves_the_model_usable(merged_model):
    ref = merged_model.generate(TWO, max_new_tokens=20, seed=5)

    def interrupt(value, hook):
        if hook.step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        merged_model.generate(TWO, max_new_tokens=20, seed=5, hooks=[("sampler.hook_tokens", interrupt)])
    with pytest.raises(KeyboardInterrupt):
        for _ in merged_model.stream(TWO, max_new_tokens=20, seed=5, chunk_duration=0.1,
                                     hooks=[("sampler.hook_tokens", interrupt)]):
            pass
    stream = merged_model.stream(TWO, max_new_tokens=40, seed=5, chunk_duration=0.1,
                                 hooks=[("sampler.hook_tokens", lambda v, h: None)])
    next(stream)
    stream.close()                                          # a consumer that stops early
    assert not merged_model._hooks
    np.testing.assert_array_equal(merged_model.generate(TWO, max_new_tokens=20, seed=5).tokens, ref.tokens)


def test_generation_records_what_reproduces_it(tiny_path, tmp_path):
    m = mglab.load(tiny_path, dtype="q8")
    g = m.generate("lofi", max_new_tokens=16, seed=11, top_k=30)
    assert g.mglab_version == mglab.__version__
    assert g.settings["seed"] == 11 and g.settings["top_k"] == 30
    comp = g.model["components"]["decoder_model_merged"]
    assert comp["dtype"] == "q8" and comp["file"] == "decoder_model_merged_quantized.onnx"
    assert comp["sha256"] == hashlib.sha256(m.paths["decoder_model_merged"].read_bytes()).hexdigest()
    g.save(tmp_path / "x.wav")
    back = mglab.Generation.load(tmp_path / "x.wav")
    again = mglab.load(tiny_path, dtype=back.model["components"]["text_encoder"]["dtype"])
    redo = again.generate(back.prompts, **{k: back.settings[k] for k in
                                           ["max_new_tokens", "seed", "top_k", "top_p", "temperature",
                                            "guidance_scale", "do_sample"]})
    np.testing.assert_array_equal(redo.codes, back.codes)
