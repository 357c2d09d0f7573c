"""The delay pattern against transformers' build_delay_pattern_mask and the exported ONNX graph."""

from types import SimpleNamespace

import numpy as np
import onnxruntime as ort
import pytest
import torch
from transformers import MusicgenForCausalLM

from mglab.decoding import patterns


def transformers_pattern(k, max_length, pad, audio_channels=1):
    fake = SimpleNamespace(num_codebooks=k, config=SimpleNamespace(audio_channels=audio_channels))
    start = torch.full((2 * k, 1), pad, dtype=torch.long)                 # batch of 2
    _, pattern = MusicgenForCausalLM.build_delay_pattern_mask(fake, start, pad, max_length)
    return pattern.numpy().reshape(2, k, max_length)


@pytest.mark.parametrize("k", [1, 2, 4, 8])
@pytest.mark.parametrize("max_length", [15, 16, 41])
def test_pattern_equals_transformers(k, max_length):
    ours = patterns.build_delay_pattern(k, max_length, pad_token_id=2048)
    theirs = transformers_pattern(k, max_length, 2048)
    np.testing.assert_array_equal(ours, theirs[0])
    np.testing.assert_array_equal(ours, theirs[1])


@pytest.mark.parametrize("max_length", [9, 20])
def test_stereo_pattern_equals_transformers(max_length):
    delays = patterns.default_delays(8, audio_channels=2)
    assert list(delays) == [0, 0, 1, 1, 2, 2, 3, 3]
    ours = patterns.build_delay_pattern(8, max_length, pad_token_id=2048, delays=delays)
    np.testing.assert_array_equal(ours, transformers_pattern(8, max_length, 2048, audio_channels=2)[0])


@pytest.mark.parametrize("max_length", [7, 12, 30])
def test_pattern_equals_exported_graph(tiny_path, max_length):
    session = ort.InferenceSession(str(tiny_path / "onnx" / "build_delay_pattern_mask.onnx"))
    k, pad = 4, 128
    feeds = {"input_ids": np.full((2 * k, 1), pad, dtype=np.int64), "pad_token_id": np.array([pad]),
             "max_length": np.array([max_length])}
    _, pattern = session.run(None, feeds)
    ours = patterns.build_delay_pattern(k, max_length, pad)
    np.testing.assert_array_equal(pattern.reshape(2, k, max_length)[0], ours)
    np.testing.assert_array_equal(pattern.reshape(2, k, max_length)[1], ours)


def test_pattern_forces_pads_at_both_ends():
    p = patterns.build_delay_pattern(4, 8, pad_token_id=9)
    assert (p[:, 0] == 9).all()                       # start column
    assert (p[3, 4:] == -1).all() and (p[0, 5:] == 9).all()   # upper-right triangle is forced
    assert ((p == -1).sum(axis=1) == 8 - 4).all()     # L - K frames per codebook


@pytest.mark.parametrize("k,frames", [(4, 1), (4, 10), (2, 5), (8, 3)])
def test_undelay_inverts_delay(k, frames):
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 100, size=(3, k, frames))
    tokens = patterns.delay_codes(codes, pad_token_id=100)
    assert tokens.shape == (3, k, frames + k)
    np.testing.assert_array_equal(patterns.undelay(tokens, np.arange(k)), codes)
    pattern = patterns.build_delay_pattern(k, frames + k, 100)
    assert (tokens[:, pattern != -1] == 100).all()


def test_too_short_is_a_clear_error(merged_model):
    with pytest.raises(ValueError, match="max_length=4"):
        patterns.build_delay_pattern(4, 4, 2048)
    with pytest.raises(ValueError, match="max_new_tokens=3 .*>= 4"):
        merged_model.generate("a", max_new_tokens=3)


def test_generated_tokens_follow_the_pattern(merged_model):
    g = merged_model.generate(["a", "b c"], max_new_tokens=12, do_sample=True, seed=0)
    c = merged_model.config
    pattern = patterns.build_delay_pattern(c.num_codebooks, 13, c.decoder_start_token_id)
    assert (g.tokens[:, pattern != -1] == c.decoder_start_token_id).all()
    assert (g.tokens[:, pattern == -1] < c.vocab_size).all()
    np.testing.assert_array_equal(patterns.undelay(g.tokens, c.delays), g.codes)


@pytest.mark.parametrize("k,max_length,t", [(4, 16, 16), (4, 16, 9), (8, 20, 13)])
def test_apply_delay_pattern_equals_transformers(k, max_length, t):
    """``apply_delay_pattern`` forces the pattern's pads onto the first ``t`` columns as transformers'
    ``apply_delay_pattern_mask`` does (random ids, both channel layouts)."""
    channels = 2 if k == 8 else 1
    delays = patterns.default_delays(k, audio_channels=channels)
    pattern = patterns.build_delay_pattern(k, max_length, pad_token_id=2048, delays=delays)      # [K, L]
    ids = np.random.default_rng(k + t).integers(0, 2048, size=(2, k, t))                          # [B, K, t]
    theirs = MusicgenForCausalLM.apply_delay_pattern_mask(torch.from_numpy(ids.reshape(2 * k, t)),
                                                          torch.from_numpy(np.tile(pattern, (2, 1))))
    np.testing.assert_array_equal(patterns.apply_delay_pattern(ids, pattern), theirs.numpy().reshape(2, k, t))
