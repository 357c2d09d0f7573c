"""mglab's numpy chroma against transformers' ``MusicgenMelodyFeatureExtractor`` itself (torchaudio installed
``--no-deps`` with its compiled libraries removed: pure Python, see the Makefile), every frame of every signal;
``chroma_cosine`` against audiocraft's ``ChromaCosineSimilarityMetric``."""

import numpy as np
import pytest

from mglab.audio import chroma as C

SR = 32000


def tones(freqs, seconds=0.4, sr=SR):
    return np.concatenate([np.sin(2 * np.pi * f * np.arange(int(seconds * sr)) / sr) for f in freqs]).astype(np.float32)


def signals():
    rng = np.random.default_rng(0)
    t = np.arange(int(3.1 * SR)) / SR
    chord = sum(a * np.sin(2 * np.pi * f * t) for a, f in [(1, 261.63), (0.8, 329.63), (0.6, 392.0)])
    return {"melody": tones([261.63, 293.66, 329.63, 349.23, 392.0, 440.0, 493.88, 523.25]),
            "chord": chord.astype(np.float32), "noise": (0.3 * rng.standard_normal(len(t))).astype(np.float32),
            "silence": np.zeros(len(t), np.float32), "short": tones([440.0])[:5000],
            "tone_and_silence": np.concatenate([tones([349.23], 1.0), np.zeros(SR, np.float32)])}


@pytest.fixture(scope="module")
def extractor():
    pytest.importorskip("torchaudio")
    from transformers import MusicgenMelodyFeatureExtractor

    return MusicgenMelodyFeatureExtractor()


def reference(extractor, audio, sr=SR):
    import torch

    return extractor(torch.from_numpy(np.asarray(audio)) if not isinstance(audio, list) else audio,
                     sampling_rate=sr, return_tensors="np")["input_features"]          # [B, frames, 12]


@pytest.mark.parametrize("name", list(signals()))
def test_chroma_equals_transformers_on_every_frame(extractor, name):
    x = signals()[name]
    ref, ours = reference(extractor, x[None]), C.chroma(x, SR)
    assert ours.shape == ref.shape and ours.dtype == np.float32
    np.testing.assert_array_equal(ours, ref)
    if name == "silence":
        assert (ours.argmax(-1) == 0).all()                       # no energy: bin 0, as transformers


def test_chroma_stereo_batch_and_padding_equal_transformers(extractor):
    s = signals()
    n = len(s["chord"])
    left, right = np.stack([s["melody"][:n], s["chord"]]), np.stack([s["noise"][:n], s["melody"][:n]])
    stereo = np.stack([left, right])                                                   # [2, 2 channels, S]
    np.testing.assert_array_equal(C.chroma(stereo, SR), reference(extractor, stereo))
    clips = [s["melody"], s["chord"][:SR]]                         # two lengths: padded with silence to the longest
    np.testing.assert_array_equal(C.chroma(clips, SR), reference(extractor, clips))


@pytest.mark.parametrize("sr", [44100, 16000])
def test_chroma_other_sample_rates_equal_transformers(extractor, sr):
    import torch
    import torchaudio

    x = tones([329.63, 392.0, 261.63, 440.0], 0.5, sr) + 0.3 * tones([110.0], 2.0, sr)
    ours = C.resample(x[None], sr, SR)
    theirs = torchaudio.functional.resample(torch.from_numpy(x[None]), sr, SR, rolloff=0.945,
                                            lowpass_filter_width=24).numpy()
    assert ours.shape == theirs.shape and np.abs(ours - theirs).max() < 1e-5
    np.testing.assert_array_equal(C.chroma(x, sr), reference(extractor, x[None], sr))


def test_chroma_cuts_at_30_seconds():
    assert C.chroma(np.zeros(SR * 31, np.float32), SR).shape == (1, 30 * SR // 4096 + 1, 12)


@pytest.mark.parametrize("bad, match", [(np.zeros((1, 1, 1, 9)), "shape"), (np.array([]), "non-empty"),
                                        (np.array([np.nan, 1.0]), "NaN"), ([], "empty")])
def test_bad_melody_is_a_clear_error(bad, match):
    with pytest.raises(ValueError, match=match):
        C.chroma(bad, SR)
    with pytest.raises(ValueError, match="sample_rate"):
        C.chroma(np.zeros(100), 0)


def test_chroma_cosine_equals_audiocraft_metric():
    import torch
    import torchaudio.functional  # noqa: F401  the real module, before audiocraft's stand-ins
    import torchaudio.transforms  # noqa: F401

    from mglab.onnx.audiocraft_env import install

    install()
    from audiocraft.metrics.chroma_cosinesim import ChromaCosineSimilarityMetric

    a = tones([262, 294, 330, 349, 392, 440, 494, 523])
    b = tones([262, 294, 311, 349, 392, 415, 494, 523])
    c = (0.3 * np.random.default_rng(1).standard_normal(len(a))).astype(np.float32)
    metric = ChromaCosineSimilarityMetric(sample_rate=SR, n_chroma=12, radix2_exp=14, argmax=True)
    for gen in (a, b, c):
        metric.reset()
        metric.update(torch.from_numpy(gen)[None, None], torch.from_numpy(a)[None, None], torch.tensor([len(a)]),
                      torch.tensor([SR]))
        assert C.chroma_cosine(a, gen, SR) == pytest.approx(metric.compute(), abs=1e-6)
    assert C.chroma_cosine(a, a, SR) == 1.0 and C.chroma_cosine(a, c, SR) < 0.3
    from mglab.audio.evaluate import chroma_cosine

    assert chroma_cosine is C.chroma_cosine
