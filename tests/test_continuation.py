"""Continuation from audio against transformers: ``encodec_encode.onnx`` (mglab export's encoder) equals
``audio_encoder.encode``, and greedy continuation with guidance equals ``generate(input_values=...)`` token
for token; prompts given as a Generation, a file, unconditionally; bad audio refused before any model runs."""

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import PROMPTS, transformers_streamed

SR = 32000


def clips(batch: int, samples: int, seed: int = 0) -> np.ndarray:
    """Different, musical-ish audio per clip: ``[B, 1, samples]``."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / SR
    f = rng.uniform(150, 600, size=(batch, 1, 1))
    return (0.4 * np.sin(2 * np.pi * f * t) + 0.05 * rng.normal(size=(batch, 1, samples))).astype(np.float32)


@pytest.mark.parametrize("samples", [3200, 7340, 640 * 30 + 17])
def test_the_exported_encoder_equals_transformers(merged_model, torch_model, samples):
    x = clips(2, samples)
    with torch.no_grad():
        ref = torch_model.audio_encoder.encode(torch.from_numpy(x), return_dict=True).audio_codes.numpy()
    ours = merged_model.codec.encode(x)                                       # [B, K, frames]
    assert ref.shape[0] == 1
    np.testing.assert_array_equal(ours, ref[0])


def transformers_continue(torch_model, ids, mask, audio, **kwargs):
    """transformers' delayed token matrix ``[B, K, L]`` for a continuation, the prompt's forced codes included."""
    with torch.no_grad():
        codes = torch_model.audio_encoder.encode(torch.from_numpy(audio)).audio_codes[0]   # [B, K, P]
    wav, seq = transformers_streamed(torch_model, ids, mask, input_values=torch.from_numpy(audio), **kwargs)
    dec = torch_model.decoder
    b, k, p = codes.shape
    start = torch.full((b * k, 1), dec.config.bos_token_id)
    _, pattern = dec.build_delay_pattern_mask(torch.cat([start, codes.reshape(b * k, p)], -1),
                                              pad_token_id=dec.config.bos_token_id, max_length=seq.shape[-1])
    seq = dec.apply_delay_pattern_mask(seq, pattern)
    return wav, seq.reshape(b, k, -1).numpy(), codes.numpy()


@pytest.mark.parametrize("guidance_scale", [3.0, 1.0])
def test_greedy_continuation_matches_transformers(model, torch_model, guidance_scale):
    audio = clips(2, 640 * 12 + 100, seed=1)                                 # two different prompt clips
    ids, mask = model.text.tokenize(PROMPTS)
    ours = model.generate(PROMPTS, audio=audio, max_new_tokens=24, do_sample=False, guidance_scale=guidance_scale)
    wav, tokens, codes = transformers_continue(torch_model, ids, mask, audio, max_new_tokens=24, do_sample=False,
                                               guidance_scale=guidance_scale)
    assert ours.prompt_frames == codes.shape[-1] == 13
    np.testing.assert_array_equal(ours.codes[:, :, :13], codes)               # the prompt's frames first
    assert ours.tokens.shape == tokens.shape
    np.testing.assert_array_equal(ours.tokens, tokens)
    assert ours.audio.shape == wav.shape and np.abs(ours.audio - wav).max() <= 1e-4


def test_audio_from_a_file_at_another_rate_is_resampled(merged_model, tmp_path):
    import librosa

    y = clips(1, SR // 2, seed=2)[0, 0]
    sf.write(tmp_path / "prompt.wav", librosa.resample(y, orig_sr=SR, target_sr=16000), 16000)
    gen = merged_model.generate("lofi piano", audio=tmp_path / "prompt.wav", max_new_tokens=8, seed=0)
    assert gen.prompt_frames == 25 and gen.codes.shape[-1] == 25 + 8 - 3
    arr = merged_model.generate("lofi piano", audio=librosa.resample(y, orig_sr=SR, target_sr=16000),
                                sample_rate=16000, max_new_tokens=8, seed=0)
    np.testing.assert_array_equal(arr.codes[:, :, :25], gen.codes[:, :, :25])


def test_continuing_a_generation_and_unconditionally(merged_model):
    first = merged_model.generate(PROMPTS, duration=0.4, seed=0)
    more = merged_model.generate(PROMPTS, continue_from=first, duration=0.3, seed=1)
    np.testing.assert_array_equal(more.codes[:, :, :20], first.codes)
    assert more.prompt_frames == 20 and more.codes.shape[-1] == 35
    free = merged_model.generate(None, audio=clips(2, 3200), duration=0.2, seed=0)
    assert free.prompts == ["", ""] and free.prompt_frames == 5
    chunks = list(merged_model.stream(PROMPTS, continue_from=first, duration=0.3, seed=1, chunk_duration=0.1))
    assert np.abs(np.concatenate(chunks, axis=-1) - more.audio).max() <= 1e-4


def test_unconditional_continuation_equals_transformers(merged_model, torch_model):
    """``prompt=None`` continues with the null condition (zeros, mask off), as transformers'
    ``get_unconditional_inputs`` with ``input_values``: audio within 1e-4. Conditioning on the T5 encoding of ""
    instead (a planted bug) is 3e-3 off."""
    audio = clips(2, 640 * 8 + 50, seed=3)
    ours = merged_model.generate(None, audio=audio, max_new_tokens=20, do_sample=False, guidance_scale=1.0)
    uncond = torch_model.get_unconditional_inputs(num_samples=2)
    with torch.no_grad():
        wav = torch_model.generate(encoder_outputs=uncond.encoder_outputs, attention_mask=uncond.attention_mask,
                                   input_values=torch.from_numpy(audio), guidance_scale=1.0, do_sample=False,
                                   max_new_tokens=20).numpy()
    assert ours.audio.shape == wav.shape
    assert np.abs(ours.audio - wav).max() <= 1e-4


@pytest.mark.parametrize("kwargs, message", [
    (dict(audio=np.zeros(0, np.float32)), "audio is empty"),
    (dict(audio=np.full(3200, np.nan, np.float32)), "NaN or infinite"),
    (dict(audio=np.zeros((2, 3200), np.float32)), "audio has 2 channels; this model takes 1"),
    (dict(audio=np.zeros((3, 1, 3200), np.float32)), "audio holds 3 clips for 2 prompts"),
    (dict(audio=np.zeros(40 * SR, np.float32)), "shorter than the model's window"),
    (dict(audio=np.zeros(100, np.float32)), "at least 2 frames"),
    (dict(audio="/no/such/file.wav"), "cannot be read as audio"),
    (dict(audio=np.zeros(3200, np.float32), sample_rate=-5), "sample_rate=-5 is not allowed"),
    (dict(sample_rate=16000), "sample_rate is the rate of an audio prompt"),
    (dict(audio=np.zeros(3200, np.float32), continue_from=object()), "give one of them, not both"),
])
def test_bad_audio_is_refused_before_any_model_runs(merged_model, kwargs, message):
    ran = []
    with merged_model.hooks([("text_encoder.hook_hidden", lambda x, h: ran.append(1))]):
        with pytest.raises((ValueError, TypeError), match=message):
            merged_model.generate(PROMPTS, max_new_tokens=8, **kwargs)
    assert not ran


def test_silent_audio_is_allowed(merged_model):
    gen = merged_model.generate("lofi piano", audio=np.zeros(3200, np.float32), max_new_tokens=8)
    assert gen.prompt_frames == 5


def test_a_model_without_an_encoder_says_how_to_get_one():
    from helpers import ROOT

    import mglab

    nano = mglab.load(ROOT / "data" / "models" / "nano-musicgen")
    with pytest.raises(ValueError, match="python -m mglab export"):
        nano.generate("a piano melody", audio=np.zeros(3200, np.float32), max_new_tokens=8)


def test_long_form_continues_an_audio_prompt_window_after_window(merged_model):
    """An audio prompt of 10 frames, 1 s windows, 2 s new: the prompt's frames first, then every new frame."""
    audio = clips(1, 640 * 10)
    gen = merged_model.generate("lofi piano", audio=audio, duration=2.0, window=1.0, seed=0)
    assert gen.prompt_frames == 10 and gen.codes.shape[-1] == 10 + 100
    np.testing.assert_array_equal(gen.codes[:, :, :10], merged_model.codec.encode(audio))
