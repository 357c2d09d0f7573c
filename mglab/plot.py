"""Figures of a generation: waveform, mel spectrogram, codes matrix. librosa-style keyword arguments; each
function draws on ``ax`` (a new figure when None) and returns the matplotlib Axes.

Examples
--------
>>> import mglab, mglab.plot
>>> g = mglab.load("data/models/tiny-musicgen").generate("lofi piano", duration=1, seed=0)
>>> ax = mglab.plot.plot_codes(g.codes[0])
"""

from __future__ import annotations

import numpy as np


def _axes(ax, figsize=(10, 3)):
    if ax is None:
        import matplotlib.pyplot as plt
        _, ax = plt.subplots(figsize=figsize)
    return ax


def plot_waveform(y: np.ndarray, *, sr: int, ax=None, color="C0", title="waveform"):
    """Audio ``y`` ``[samples]`` or ``[channels, samples]`` against time in seconds."""
    ax = _axes(ax)
    y = np.atleast_2d(y)                                                       # [channels, samples]
    t = np.arange(y.shape[-1]) / sr                                            # [samples]
    for c, channel in enumerate(y):
        ax.plot(t, channel, color=color if len(y) == 1 else f"C{c}", linewidth=0.6)
    ax.set(xlabel="time (s)", ylabel="amplitude", title=title, xlim=(0, t[-1] if len(t) else 1))
    return ax


def plot_spectrogram(y: np.ndarray, *, sr: int, n_fft: int = 2048, hop_length: int = 512, n_mels: int = 128,
                     fmax: float | None = None, ax=None, cmap="magma", title="mel spectrogram"):
    """Mel power spectrogram of mono ``y`` ``[samples]`` in dB (librosa)."""
    import librosa
    import librosa.display

    ax = _axes(ax)
    y = np.asarray(y, dtype=np.float32).reshape(-1)
    n_fft = min(n_fft, max(16, len(y)))
    mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels,
                                         fmax=fmax)                           # [n_mels, frames]
    db = librosa.power_to_db(mel, ref=np.max)                                 # [n_mels, frames]
    img = librosa.display.specshow(db, sr=sr, hop_length=hop_length, x_axis="time", y_axis="mel",
                                   fmax=fmax, ax=ax, cmap=cmap)
    ax.figure.colorbar(img, ax=ax, format="%+2.0f dB")
    ax.set(title=title)
    return ax


def plot_codes(codes: np.ndarray, *, frame_rate: float | None = None, pad_token_id: int | None = None,
               ax=None, cmap="viridis", title="codes"):
    """A codebook matrix ``[K, frames]`` as an image: one row per codebook. Pads (``pad_token_id``) are grey."""
    import matplotlib.pyplot as plt

    ax = _axes(ax)
    codes = np.asarray(codes)
    shown = np.ma.masked_equal(codes, pad_token_id) if pad_token_id is not None else codes
    cm = plt.get_cmap(cmap).copy()
    cm.set_bad("lightgrey")
    extent = None
    if frame_rate:
        extent = (0, codes.shape[1] / frame_rate, codes.shape[0] - 0.5, -0.5)
    img = ax.imshow(shown, aspect="auto", interpolation="nearest", cmap=cm, extent=extent)
    ax.set(xlabel="time (s)" if frame_rate else "position", ylabel="codebook", title=title,
           yticks=range(codes.shape[0]))
    ax.figure.colorbar(img, ax=ax, label="token id")
    return ax
