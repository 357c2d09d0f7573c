"""Chroma: the melody a MusicGen-Melody model is conditioned on, and how closely a clip follows one.

:func:`chroma` is transformers' ``MusicgenMelodyFeatureExtractor`` (and audiocraft's ``ChromaExtractor`` with
``argmax=True``) in numpy and librosa, without torchaudio::

    audio [B, C, samples] --resample to 32 kHz (torchaudio's sinc_interp_hann, rolloff 0.945, width 24)
          --mean over channels, cut to 30 s, zero-padded to the longest clip and to >= n_fft samples
          --power spectrogram (n_fft 16384, hop 4096, periodic Hann, centred with reflect padding)
          --librosa's chroma filter bank (tuning 0) --argmax per frame--> one-hot [B, frames, 12]

A frame without energy (silence, padding) has every bin zero: its argmax is bin 0, as in transformers.
``tests/test_melody_chroma.py`` checks every frame against transformers' extractor itself.

:func:`chroma_cosine` is audiocraft's ``ChromaCosineSimilarityMetric`` (argmax chroma, ``radix2_exp=14``): the
share of frames whose strongest pitch class is the same, over the first ``ceil(samples / 4096)`` frames.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

SAMPLE_RATE = 32000         # the extractor's rate (and every MusicGen-Melody codec's)
N_FFT = 16384
HOP = 4096
NUM_CHROMA = 12
MAX_SECONDS = 30            # the extractor's chunk_length: longer melodies are cut
ROLLOFF, FILTER_WIDTH = 0.945, 24    # transformers' resampling arguments to torchaudio


def check_melody(audio, sample_rate, name: str = "melody") -> list[np.ndarray]:
    """``audio`` as a list of float32 ``[channels, samples]`` clips; a clear error for anything else.

    ``[samples]`` is one mono clip, ``[channels, samples]`` one clip, ``[B, channels, samples]`` a batch, a list
    of 1-D or 2-D arrays a batch of clips of any lengths."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise ValueError(f"{name}_sample_rate={sample_rate!r} is not allowed: a positive integer number of Hz")
    clips = list(audio) if isinstance(audio, (list, tuple)) else None
    if clips is None:
        a = np.asarray(audio)
        if a.ndim not in (1, 2, 3):
            raise ValueError(f"{name} has shape {a.shape}: allowed [samples], [channels, samples] or "
                             "[B, channels, samples]")
        clips = list(a) if a.ndim == 3 else [a]
    out = []
    for i, c in enumerate(clips):
        c = np.asarray(c)
        if c.ndim not in (1, 2) or c.shape[-1] == 0 or not np.issubdtype(c.dtype, np.number):
            raise ValueError(f"{name}[{i}] has shape {c.shape} ({c.dtype}): allowed a non-empty numeric "
                             "[samples] or [channels, samples] array")
        if not np.isfinite(c).all():
            raise ValueError(f"{name}[{i}] holds NaN or inf samples")
        out.append(np.atleast_2d(c).astype(np.float32))                     # [C, samples]
    if not out:
        raise ValueError(f"{name} is empty: give at least one clip")
    return out


@lru_cache(maxsize=8)
def _resample_kernel(orig: int, new: int) -> tuple[np.ndarray, int]:
    """torchaudio's ``_get_sinc_resample_kernel`` (sinc_interp_hann): ``[new, 1, 2 * width + orig]`` and width."""
    base = min(orig, new) * ROLLOFF
    width = math.ceil(FILTER_WIDTH * orig / base)
    idx = np.arange(-width, width + orig, dtype=np.float32)[None, None] / orig      # [1, 1, L]
    t = np.arange(0, -new, -1, dtype=np.float32)[:, None, None] / new + idx          # [new, 1, L]
    t = np.clip(t * np.float32(base), -FILTER_WIDTH, FILTER_WIDTH).astype(np.float32)
    window = np.cos(t * np.float32(math.pi / FILTER_WIDTH / 2)) ** 2
    t = t * np.float32(math.pi)
    with np.errstate(invalid="ignore", divide="ignore"):
        kernel = np.where(t == 0, np.float32(1.0), np.sin(t) / t)
    return (kernel * window * np.float32(base / orig)).astype(np.float32), width


def resample(audio: np.ndarray, orig: int, new: int) -> np.ndarray:
    """``audio [..., samples]`` from ``orig`` to ``new`` Hz, as ``torchaudio.functional.resample(audio, orig, new,
    rolloff=0.945, lowpass_filter_width=24)`` (what transformers' extractor calls)."""
    if orig == new:
        return audio
    g = math.gcd(orig, new)
    o, n = orig // g, new // g
    kernel, width = _resample_kernel(o, n)                                    # [n, 1, L]
    x = audio.reshape(-1, audio.shape[-1])                                    # [W, samples]
    length = x.shape[-1]
    x = np.pad(x, ((0, 0), (width, width + o)))                               # [W, padded]
    steps = (x.shape[-1] - kernel.shape[-1]) // o + 1
    frames = np.lib.stride_tricks.sliding_window_view(x, kernel.shape[-1], axis=-1)[:, ::o][:, :steps]   # [W, s, L]
    out = np.einsum("wsl,nl->wsn", frames, kernel[:, 0]).reshape(x.shape[0], -1)   # [W, s * n]
    out = out[:, :math.ceil(n * length / o)]
    return out.reshape(*audio.shape[:-1], out.shape[-1]).astype(np.float32)


@lru_cache(maxsize=4)
def filter_bank(sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT) -> np.ndarray:
    """librosa's chroma filter bank ``[12, n_fft // 2 + 1]`` (tuning 0), as transformers and audiocraft use."""
    import librosa

    return librosa.filters.chroma(sr=sample_rate, n_fft=n_fft, tuning=0, n_chroma=NUM_CHROMA).astype(np.float32)


def _prepare(clips: list[np.ndarray], sample_rate: int) -> np.ndarray:
    """Resampled to 32 kHz, mono, cut to 30 s, zero-padded to the longest and to ``n_fft``: ``[B, samples]``."""
    mono = [resample(c, sample_rate, SAMPLE_RATE).mean(axis=0)[:MAX_SECONDS * SAMPLE_RATE] for c in clips]
    longest = max(len(m) for m in mono)
    out = np.zeros((len(mono), longest), dtype=np.float32)                    # [B, samples]
    for i, m in enumerate(mono):
        out[i, :len(m)] = m
    if longest < N_FFT:                                                       # too short: centred in n_fft
        pad = N_FFT - longest
        out = np.pad(out, ((0, 0), (pad // 2, pad - pad // 2)))               # [B, n_fft]
    return out


def power_chroma(wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """``wave [B, samples]`` (32 kHz) -> the chroma energy ``[B, frames, 12]`` before the argmax (float64)."""
    import librosa

    spec = librosa.stft(wave.astype(np.float64), n_fft=N_FFT, hop_length=HOP, window="hann", center=True,
                        pad_mode="reflect")                                   # [B, n_fft/2 + 1, frames]
    power = np.abs(spec) ** 2                                                 # [B, bins, frames]
    return np.einsum("cf,bft->btc", filter_bank(sample_rate).astype(np.float64), power)   # [B, frames, 12]


def one_hot(energy: np.ndarray) -> np.ndarray:
    """``[..., 12]`` energies -> one-hot ``[..., 12]`` float32 at the strongest bin (bin 0 when all are 0)."""
    out = np.zeros(energy.shape, dtype=np.float32)
    np.put_along_axis(out, energy.argmax(axis=-1)[..., None], 1.0, axis=-1)
    return out


def chroma(audio, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """One-hot chroma ``[B, frames, 12]`` of ``audio``, as ``MusicgenMelodyFeatureExtractor`` gives it.

    Parameters
    ----------
    audio : array or list of arrays
        ``[samples]`` (one mono clip), ``[channels, samples]`` (one clip; channels are averaged),
        ``[B, channels, samples]``, or a list of ``[samples]`` / ``[channels, samples]`` clips of any lengths
        (padded with silence to the longest, as transformers pads a batch).
    sample_rate : int
        Hz of ``audio``; resampled to 32 kHz first.

    Returns
    -------
    np.ndarray
        float32 ``[B, 1 + samples_32k // 4096, 12]`` (samples after cutting to 30 s and padding).
    """
    clips = check_melody(audio, sample_rate)
    return one_hot(power_chroma(_prepare(clips, int(sample_rate))))


def chroma_cosine(reference, generated, sr: int) -> float:
    """Melody adherence as audiocraft's ``ChromaCosineSimilarityMetric`` (argmax chroma, n_fft 16384): the share
    of frames, over the first ``ceil(samples / 4096)``, whose strongest pitch class is the same in both.

    ``reference`` and ``generated`` are one clip each (``[samples]`` or ``[channels, samples]``) or batches of
    the same size; both are cut to the shorter length (audiocraft requires equal lengths). A batch gives the
    share over all its frames. 1.0 is the same pitch class everywhere; unrelated clips score about 1/12.
    """
    ref, gen = check_melody(reference, sr, "reference"), check_melody(generated, sr, "generated")
    if len(ref) != len(gen):
        raise ValueError(f"reference has {len(ref)} clips and generated {len(gen)}: give the same number")
    same = total = 0
    for r, g in zip(ref, gen):
        n = min(r.shape[-1], g.shape[-1])
        a, b = chroma([r[:, :n]], sr)[0], chroma([g[:, :n]], sr)[0]          # [frames, 12] each
        t = math.ceil(math.ceil(n * SAMPLE_RATE / sr) / HOP)
        same += int((a[:t] * b[:t]).sum())
        total += t
    return same / total
