"""A tiny stereo MusicGen (``scripts/build_tiny_model.py --stereo``: 8 codebooks, 2 channels), exported by
mglab's exporter: text to music and continuation equal transformers; hooks, plots and WAVs have two channels."""

import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import PROMPTS, ROOT, transformers_streamed

sys.path.insert(0, str(ROOT / "scripts"))
from build_tiny_model import build  # noqa: E402
from test_parity import transformers_generate  # noqa: E402


@pytest.fixture(scope="module")
def stereo(tmp_path_factory):
    """``(mglab model, transformers model)`` on the same stereo weights."""
    from transformers import MusicgenForConditionalGeneration

    import mglab

    out = tmp_path_factory.mktemp("stereo") / "tiny-stereo"
    build(out, stereo=True, variants=((), ()))
    return mglab.load(out, decoder="merged"), MusicgenForConditionalGeneration.from_pretrained(out / "pytorch").eval()


def test_stereo_text_to_music_equals_transformers(stereo):
    m, tm = stereo
    assert m.config.num_codebooks == 8 and m.config.audio_channels == 2 and m.codec.num_codebooks == 8
    ours = m.generate(PROMPTS, max_new_tokens=24, do_sample=False, guidance_scale=3.0)
    ids, mask = m.text.tokenize(PROMPTS)
    audio, tokens = transformers_generate(tm, ids, mask, max_new_tokens=24, do_sample=False, guidance_scale=3.0)
    np.testing.assert_array_equal(ours.tokens, tokens)
    assert ours.audio.shape == audio.shape == (2, 2, ours.codes.shape[-1] * 640)
    assert np.abs(ours.audio - audio).max() <= 1e-4
    assert np.abs(ours.audio[:, 0] - ours.audio[:, 1]).max() > 1e-3          # two different channels


def test_stereo_continuation_equals_transformers(stereo):
    m, tm = stereo
    rng = np.random.default_rng(0)
    audio = (0.3 * rng.standard_normal((2, 2, 640 * 8))).astype(np.float32)  # [B, 2 channels, samples]
    ours = m.generate(PROMPTS, audio=audio, max_new_tokens=16, do_sample=False, guidance_scale=3.0)
    with torch.no_grad():
        left = tm.audio_encoder.encode(torch.from_numpy(audio[:, :1])).audio_codes[0]
        right = tm.audio_encoder.encode(torch.from_numpy(audio[:, 1:])).audio_codes[0]
    codes = torch.stack([left, right], dim=2).reshape(2, 8, -1).numpy()         # left, right interleaved
    np.testing.assert_array_equal(ours.codes[:, :, :ours.prompt_frames], codes)
    ids, mask = m.text.tokenize(PROMPTS)
    wav, _ = transformers_streamed(tm, ids, mask, input_values=torch.from_numpy(audio), max_new_tokens=16,
                          do_sample=False, guidance_scale=3.0)
    assert ours.audio.shape == wav.shape and np.abs(ours.audio - wav).max() <= 1e-4


def test_stereo_hooks_plots_and_wavs(stereo, tmp_path):
    import matplotlib.pyplot as plt

    from mglab.inspect import plot
    m, _ = stereo
    gen, cache = m.run_with_cache("lofi piano", names_filter=["guidance.hook_logits", "codec.hook_latent"],
                                  max_new_tokens=12, seed=0)
    assert cache["guidance.hook_logits"].shape[2] == 8                            # K = 8 per step
    latent = cache["codec.hook_latent"]                                            # [channels, B, D, frames]
    assert latent.shape[:2] == (2, 1) and not np.allclose(latent[0], latent[1])
    fig, axes = plt.subplots(2, 1)
    for ch, ax in enumerate(axes):
        plot.plot_spectrogram(gen.audio[0, ch], sr=gen.sample_rate, ax=ax, title=f"channel {ch}")
    plt.close(fig)
    path = gen.save(tmp_path / "stereo.wav")[0]
    data, sr = sf.read(path)
    assert data.shape == (gen.audio.shape[-1], 2) and sr == gen.sample_rate
