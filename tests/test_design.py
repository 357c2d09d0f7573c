"""The facade and its stages: the load spec, the codec interface, per-call hooks, parameters declared once,
and the defects found on the way (each pinned with an expectation from outside the code it tests)."""

import ast
import pickle
import re

import numpy as np
import pytest
from helpers import ROOT, TINY

import mglab
from mglab.core import settings
from mglab.core.config import MusicGenConfig
from mglab.model import MusicGen
from mglab.networks.codec import Codec

KW = dict(max_new_tokens=16, seed=0, do_sample=True, top_k=20)


def test_a_model_pickles_as_its_load_spec(merged_model):
    blob = pickle.dumps(merged_model)
    assert len(blob) < 2000                                   # the spec, not the sessions
    again = pickle.loads(blob)
    assert again is not merged_model and again.spec == merged_model.spec
    np.testing.assert_array_equal(again.generate("rock", **KW).tokens, merged_model.generate("rock", **KW).tokens)


def test_the_spec_recreates_the_same_variant(tiny_path):
    m = mglab.load(tiny_path, dtype="q8", decoder="split", kv_cache="concat")
    again = mglab.load(m.spec)
    assert (again.dtype, again.layout, again.decoder.inplace) == ("q8", "split", None)


class HalfSpeedCodec(Codec):
    """A codec of our own: each frame is a 100-sample ramp whose height is codebook 0's token."""

    sample_rate, hop_length, channels, num_codebooks = 16000, 100, 1, 4

    def decode(self, codes):
        ramp = np.linspace(0, 1, self.hop_length, dtype=np.float32)               # [hop]
        audio = codes[:, :1, :, None] * ramp                                       # [B, 1, frames, hop]
        return audio.reshape(codes.shape[0], 1, -1).astype(np.float32)             # [B, 1, frames * hop]


def test_components_can_be_passed_and_the_codec_decides_the_rates(merged_model):
    m = MusicGen(merged_model.config, merged_model.text, merged_model.decoder, HalfSpeedCodec())
    gen = m.generate("rock", duration=0.2, **{k: v for k, v in KW.items() if k != "max_new_tokens"})
    assert m.config.frame_rate == 160 and gen.sample_rate == 16000
    assert gen.codes.shape == (1, 4, 32)                          # 0.2 s at 160 frames/s
    np.testing.assert_allclose(gen.audio[0, 0, 99::100], gen.codes[0, 0])    # the ramp ends at the token
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(m)


def test_codec_codebooks_are_encodecs_quantizer_tables(merged_model, torch_model):
    layers = torch_model.audio_encoder.quantizer.layers
    expected = np.stack([layer.codebook.embed.detach().numpy() for layer in layers])     # [K, 128, D]
    np.testing.assert_array_equal(merged_model.codec.codebooks(), expected)


def test_hook_points_carry_their_kind(merged_model):
    points = merged_model.hook_names()
    assert points["decoder.layers.1.hook_key"].kind == "kv"
    assert points["decoder.layers.0.hook_cross_attn"].kind == "attention"
    assert {p.kind for n, p in points.items() if n.startswith("guidance.")} == {"logits"}
    seen = []
    merged_model.generate("a", hooks=[("decoder.layers.0.hook_value", lambda v, h: seen.append(h.kind))], **KW)
    assert set(seen) == {"kv"}


def test_editing_hooks_run_only_at_the_selected_steps(merged_model):
    ban = 5

    def force(tokens, hook):
        return np.full_like(tokens, ban)

    gen = merged_model.generate("a", hooks=[("sampler.hook_tokens", force)], hook_steps=[3, 4], **KW)
    # codebook 0 of frame f is sampled at step f: frames 3 and 4 forced, the others free
    assert (gen.codes[0, 0, 3:5] == ban).all()
    plain = merged_model.generate("a", **KW)
    np.testing.assert_array_equal(gen.codes[0, 0, :3], plain.codes[0, 0, :3])
    with merged_model.hooks([("sampler.hook_tokens", force)], steps=slice(10, None)):
        gen = merged_model.generate("a", **KW)
    assert (gen.codes[0, 0, 10:] == ban).all() and (gen.codes[0, 0, :10] == plain.codes[0, 0, :10]).all()
    with pytest.raises(TypeError, match=r"steps=slice\(-1, None, None\) is not allowed"):
        merged_model.generate("a", hooks=[("sampler.hook_tokens", force)], hook_steps=slice(-1, None), **KW)


def test_two_streams_with_their_own_hooks_do_not_interfere(merged_model):
    def zero(audio, hook):
        return np.zeros_like(audio)

    a = merged_model.stream("a", chunk_duration=0.1, hooks=[("codec.hook_audio", zero)], **KW)
    b = merged_model.stream("a", chunk_duration=0.1, **KW)
    chunks_a, chunks_b = [], []
    for ca, cb in zip(a, b):                     # interleaved, step by step
        chunks_a.append(ca)
        chunks_b.append(cb)
    assert np.abs(np.concatenate(chunks_a, -1)).max() == 0
    assert np.abs(np.concatenate(chunks_b, -1)).max() > 0


def test_stream_fires_the_codec_hooks(merged_model):
    """Defect: stream() ignored codec.hook_codes / codec.hook_audio. An edit must reach the streamed audio as
    it reaches generate's."""
    def shift(codes, hook):
        return (codes + 1) % 128

    seen = []
    full = merged_model.generate("a", hooks=[("codec.hook_codes", shift)], **KW)
    chunks = list(merged_model.stream("a", chunk_duration=0.1, **KW, hooks=[
        ("codec.hook_codes", shift), ("codec.hook_audio", lambda v, h: seen.append(v.shape[-1]))]))
    joined = np.concatenate(chunks, axis=-1)
    assert np.abs(joined - full.audio).max() <= 1e-4
    assert len(seen) == len(chunks) and sum(seen) == full.audio.shape[-1]
    plain = merged_model.generate("a", **KW)
    assert np.abs(plain.audio - full.audio).max() > 1e-3             # the edit changed the audio


def test_max_new_tokens_counts_every_window(merged_model):
    """Defect: the docstring said "of a single window". Over several windows the frames are still
    max_new_tokens - max(delays) (transformers' count for one window, kept for all)."""
    gen = merged_model.generate("a", max_new_tokens=40, window=0.3, extend_stride=0.2, seed=0)
    assert gen.codes.shape[-1] == 40 - 3
    assert "single window" not in MusicGen.generate.__doc__
    assert "every window" in MusicGen.generate.__doc__


def test_frames_follow_the_largest_delay_not_k():
    """Defect: frames = max_new_tokens + 1 - K assumed max(delays) == K - 1; stereo has K = 8, delays up to 3."""
    stereo = MusicGenConfig.from_dict({"decoder": {"num_codebooks": 8, "audio_channels": 2},
                                       "audio_encoder": {"sampling_rate": 32000, "upsampling_ratios": [8, 5, 4, 4]}})
    assert stereo.delays == (0, 0, 1, 1, 2, 2, 3, 3)
    defaults = {"max_new_tokens": None, "max_length": 1500, "guidance_scale": 3.0, "do_sample": True,
                "temperature": 1.0, "top_k": 250, "top_p": 1.0}
    s = settings.resolve(stereo, defaults, 1, max_new_tokens=100)
    assert s.frames == 97                                   # transformers: max_length - 1 - max(delays)
    assert settings.resolve(stereo, defaults, 1, duration=1.0).frames == 50


def test_module_stage_numbers_follow_the_pipeline():
    """Defect: stage numbers in module docstrings disagreed with the pipeline order. The order is the one
    model.py's map draws: text, conditioning, decoder, guidance, sampling, patterns, codec."""
    order = ["text", "conditioning", "decoder", "guidance", "sampling", "patterns", "codec"]
    room = {"text": "networks", "decoder": "networks", "codec": "networks"}
    for i, name in enumerate(order, start=1):
        doc = ast.get_docstring(ast.parse((ROOT / "mglab" / room.get(name, "decoding") / f"{name}.py").read_text()))
        assert doc.startswith(f"Stage {i} of {len(order)}:"), (name, doc[:40])
    facade = (ROOT / "mglab" / "model.py").read_text()
    for i, name in enumerate(order, start=1):
        assert f"{name}.py ({i})" in facade
    stages = {p.stem for p in (ROOT / "mglab").rglob("*.py")
              if re.match(r"Stage \d", ast.get_docstring(ast.parse(p.read_text())) or "")}
    assert stages == set(order)


TYPE_VS_VALUE = [
    (dict(duration="2"), TypeError), (dict(duration=-1), ValueError),
    (dict(top_k=2.5), TypeError), (dict(top_k=-1), ValueError),
    (dict(max_new_tokens=2.5), TypeError), (dict(max_new_tokens=3), ValueError),
    (dict(seed="x"), TypeError), (dict(seed=-1), ValueError),
    (dict(guidance_scale="3"), TypeError), (dict(guidance_scale=-1), ValueError),
    (dict(do_sample="yes"), TypeError), (dict(on_nonfinite="ignore"), ValueError),
    (dict(on_nonfinite=1), TypeError), (dict(prompt=["ok", 3]), TypeError), (dict(prompt=["ok", ""]), ValueError),
    (dict(topk=5), TypeError),
]


@pytest.mark.parametrize("kwargs,error", TYPE_VS_VALUE, ids=lambda v: str(v)[:40])
def test_wrong_type_is_a_type_error_and_wrong_value_a_value_error(merged_model, kwargs, error):
    kwargs = {"prompt": "a", "max_new_tokens": 12, **kwargs}
    if "duration" in kwargs:
        del kwargs["max_new_tokens"]
    with pytest.raises(error):
        merged_model.generate(kwargs.pop("prompt"), **kwargs)


def test_parameters_are_declared_once():
    import inspect

    from mglab import cli

    sig = inspect.signature(MusicGen.generate)
    assert [p for p in sig.parameters if p in settings.NAMES] == list(settings.NAMES)
    for p in settings.PARAMS:
        assert f"{p.name} : " in MusicGen.generate.__doc__
    parser_help = _cli_help(cli)
    for p in settings.PARAMS:
        assert "--" + p.name.replace("_", "-") in parser_help
    source = (ROOT / "mglab" / "model.py").read_text()
    assert "locals()" not in source


def _cli_help(cli):
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        cli.main(["generate", "--help"])
    return out.getvalue()


def test_cli_takes_the_new_flags(tmp_path):
    from mglab import cli

    out = tmp_path / "x.wav"
    assert cli.main(["generate", "rock", "--model", str(TINY), "--out", str(out), "--max-new-tokens", "40",
                     "--negative-prompt", "lofi", "--window", "0.5", "--extend-stride", "0.3",
                     "--kv-cache", "concat", "--seed", "3", "--no-progress"]) == 0
    gen = mglab.Generation.load(out)
    assert gen.settings["negative_prompt"] == ["lofi"] and gen.settings["window_frames"] == 25
    assert gen.codes.shape[-1] == 37
    with pytest.raises(SystemExit):
        cli.main(["generate", "rock", "--model", str(TINY), "--out", str(out), "--top-k", "999"])


def test_notebook_01_forces_the_start_token_the_pipeline_forces():
    """Defect: notebook 01 built its pattern with pad_token_id where the pipeline uses decoder_start_token_id."""
    source = (ROOT / "notebooks" / "01_delay_pattern.ipynb").read_text()
    assert "decoder_start_token_id" in source and "config.pad_token_id" not in source
