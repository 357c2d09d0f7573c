"""Figures of a generation: waveform, mel spectrogram, codes matrix. librosa-style keyword arguments; each
function draws on ``ax`` (a new figure when None) and returns the matplotlib Axes.

Examples
--------
>>> import mglab, mglab.inspect.plot
>>> g = mglab.load("data/models/tiny-musicgen").generate("lofi piano", duration=1, seed=0)
>>> ax = mglab.inspect.plot.plot_codes(g.codes[0])
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
    cm = plt.get_cmap(cmap).with_extremes(bad="lightgrey")
    extent = None
    if frame_rate:
        extent = (0, codes.shape[1] / frame_rate, codes.shape[0] - 0.5, -0.5)
    img = ax.imshow(shown, aspect="auto", interpolation="nearest", cmap=cm, extent=extent)
    ax.set(xlabel="time (s)" if frame_rate else "position", ylabel="codebook", title=title,
           yticks=range(codes.shape[0]))
    ax.figure.colorbar(img, ax=ax, label="token id")
    return ax


def plot_delay_pattern(tokens: np.ndarray, *, pad_token_id: int, step: int | None = None, ax=None,
                       cmap="viridis", title="delayed token matrix", annotate: bool | None = None):
    """The delayed matrix ``[K, L]`` as the decoder fills it: grey = forced pad, white = not decoded yet.

    ``step`` shows the matrix after that many decoding steps (columns ``> step`` blank).
    """
    import matplotlib.pyplot as plt

    ax = _axes(ax)
    tokens = np.asarray(tokens)
    k, length = tokens.shape
    shown = np.ma.masked_equal(tokens, pad_token_id).astype(float)
    if step is not None:
        shown[:, step + 1:] = np.ma.masked
    cm = plt.get_cmap(cmap).with_extremes(bad=(0, 0, 0, 0))                  # see-through: the grey below shows
    done = np.arange(length)[None, :] <= (length if step is None else step)   # [1, L]
    ax.imshow((tokens == pad_token_id) & done, aspect="auto", cmap="Greys", vmin=0, vmax=2.5,
              interpolation="nearest")                                        # pads grey, the rest white
    img = ax.imshow(shown, aspect="auto", cmap=cm, interpolation="nearest", vmin=0, vmax=pad_token_id - 1)
    if annotate if annotate is not None else length <= 24:
        for (r, c), v in np.ndenumerate(tokens):
            if step is None or c <= step:
                ax.text(c, r, "P" if v == pad_token_id else str(v), ha="center", va="center", fontsize=7)
    ax.set(xlabel="position (step + 1)", ylabel="codebook", title=title, yticks=range(k))
    ax.figure.colorbar(img, ax=ax, label="token id")
    return ax


def plot_logits(logits: np.ndarray, *, top: int = 20, ax=None, labels=None, title="top tokens"):
    """Probabilities of the ``top`` most likely tokens for one or more distributions ``[V]`` or ``[n, V]``
    (e.g. conditional, unconditional, guided), side by side."""
    from ..core.numeric import log_softmax

    ax = _axes(ax)
    logits = np.atleast_2d(logits)                                            # [n, V]
    probs = np.exp(log_softmax(logits))                                       # [n, V]
    order = np.argsort(-probs[-1])[:top]                                      # top tokens of the last one
    width = 0.8 / len(probs)
    for i, p in enumerate(probs):
        label = labels[i] if labels else None
        ax.bar(np.arange(len(order)) + i * width, p[order], width=width, label=label)
    ax.set_xticks(np.arange(len(order)) + 0.4 - width / 2, [str(t) for t in order], rotation=90, fontsize=7)
    ax.set(xlabel="token id", ylabel="probability", title=title)
    if labels:
        ax.legend()
    return ax


def plot_entropy(entropy: np.ndarray, *, frame_rate: float | None = None, ax=None, label: str | None = None,
                 title="entropy per codebook", codebooks=None):
    """Entropy over steps ``[steps, K]`` (one line per codebook) or ``[steps]``, in nats."""
    ax = _axes(ax)
    entropy = np.asarray(entropy)
    entropy = entropy[:, None] if entropy.ndim == 1 else entropy             # [steps, K]
    x = np.arange(len(entropy)) / (frame_rate or 1)
    for k in codebooks if codebooks is not None else range(entropy.shape[1]):
        name = f"{label} k={k}" if label else f"codebook {k}"
        ax.plot(x, entropy[:, k], label=name, linewidth=1)
    ax.set(xlabel="time (s)" if frame_rate else "step", ylabel="entropy (nats)", title=title)
    ax.legend(fontsize=7)
    return ax


def plot_attention(attention: np.ndarray, *, ax=None, x_labels=None, cmap="magma", title="attention",
                   xlabel="text token", ylabel="step"):
    """An attention map ``[queries, keys]`` (e.g. steps x text tokens for one layer and head)."""
    ax = _axes(ax, figsize=(6, 4))
    img = ax.imshow(np.asarray(attention), aspect="auto", interpolation="nearest", cmap=cmap)
    if x_labels is not None:
        ax.set_xticks(range(len(x_labels)), x_labels, rotation=90, fontsize=7)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.figure.colorbar(img, ax=ax)
    return ax
