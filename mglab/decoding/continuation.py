"""Continuation: an audio prompt (or an earlier :class:`~mglab.Generation`) becomes the decoder's first frames.

The audio is read (a path, through soundfile) or taken as an array, checked, resampled to the model's rate
(librosa), and encoded by the codec's encoder (``encodec_encode.onnx``, written by ``python -m mglab export``)
into codes ``[B, K, P]``. Those codes are the *prefix* the decoding loop starts from, the mechanism the
long-form windows use: fed through the delay pattern as known tokens, as transformers'
``generate(input_values=...)`` does::

    codebook 0   S  p0 p1 p2 | n  n  n
    codebook 1   S  S  p0 p1 p2 | n  n        S: start/pad, p: prompt codes (forced), n: new tokens
    codebook 2   S  S  S  p0 p1 p2 | n
                          steps run through the prompt, then generate

The Generation returned holds the prompt's frames first (``prompt_frames`` of them), as transformers returns
them.

Examples
--------
>>> import mglab, numpy as np
>>> model = mglab.load("data/models/tiny-musicgen")
>>> first = model.generate("lofi piano", duration=0.5, seed=0)
>>> more = model.generate("lofi piano", continue_from=first, duration=0.5, seed=1)
>>> more.prompt_frames, more.codes.shape
(25, (1, 4, 50))
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

MIN_FRAMES = 2          # EnCodec's reflect padding needs a little audio: shorter prompts are refused


def read(audio, sample_rate: int | None) -> tuple[np.ndarray, int]:
    """A path or an array -> ``([B, C, samples] float32, rate)``; checked before any model runs."""
    if isinstance(audio, (str, os.PathLike)):
        import soundfile as sf

        path = Path(audio)
        try:
            data, rate = sf.read(path, dtype="float32", always_2d=True)                # [samples, C]
        except Exception as e:                                                    # noqa: BLE001
            raise ValueError(f"audio={str(path)!r} cannot be read as audio: {e}") from None
        if sample_rate is not None and sample_rate != rate:
            raise ValueError(f"sample_rate={sample_rate!r} contradicts the file's own rate ({rate} Hz): leave "
                             "sample_rate out for a file")
        return data.T[None], rate                                                  # [1, C, samples]
    x = np.asarray(audio)
    if x.dtype == object or not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise TypeError(f"audio of dtype {x.dtype} is not allowed: audio must be a float array or a path")
    if x.ndim not in (1, 2, 3):
        raise ValueError(f"audio has shape {x.shape}; allowed: [samples], [channels, samples] or "
                         "[batch, channels, samples]")
    x = x.reshape((1,) * (3 - x.ndim) + x.shape).astype(np.float32)               # [B, C, samples]
    return x, sample_rate


def check(x: np.ndarray, rate, *, channels: int, batch: int, model_rate: int, hop_length: int,
          window_frames: int) -> np.ndarray:
    """The audio prompt's rules, each a clear error: ``[B, C, samples]`` at ``rate`` -> at ``model_rate``."""
    if rate is None:
        rate = model_rate
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)):
        raise TypeError(f"sample_rate={rate!r} is not allowed: sample_rate must be an integer >= 1000 (Hz)")
    if rate < 1000:
        raise ValueError(f"sample_rate={rate!r} is not allowed: sample_rate must be an integer >= 1000 (Hz)")
    if x.shape[-1] == 0:
        raise ValueError("audio is empty: an audio prompt needs at least "
                         f"{MIN_FRAMES} frames ({MIN_FRAMES * hop_length / model_rate:.3f} s)")
    if not np.isfinite(x).all():
        raise ValueError(f"audio has {int((~np.isfinite(x)).sum())} NaN or infinite samples: it must be finite")
    if x.shape[1] != channels:
        raise ValueError(f"audio has {x.shape[1]} channels; this model takes {channels} "
                         f"({'mono' if channels == 1 else 'stereo'})")
    if x.shape[0] not in (1, batch):
        raise ValueError(f"audio holds {x.shape[0]} clips for {batch} prompts: give one clip, or one per prompt")
    seconds = x.shape[-1] / rate
    at = "" if rate == model_rate else f" at sample_rate={rate}"
    frames = -(-round(seconds * model_rate) // hop_length)                     # checked before resampling
    if frames < MIN_FRAMES:
        raise ValueError(f"audio is {seconds:.3f} s long{at}: an audio prompt needs at least "
                         f"{MIN_FRAMES} frames ({MIN_FRAMES * hop_length / model_rate:.3f} s)")
    if frames >= window_frames:
        raise ValueError(f"audio is {seconds:.2f} s{at} ({frames} frames): an audio prompt must be "
                         f"shorter than the model's window of {window_frames} frames "
                         f"({window_frames * hop_length / model_rate:.2f} s)")
    if rate != model_rate:
        try:
            import librosa
        except ImportError:
            raise ImportError("resampling the audio prompt needs librosa (pip install librosa), or give it at "
                              f"{model_rate} Hz") from None
        x = librosa.resample(x, orig_sr=int(rate), target_sr=model_rate, axis=-1).astype(np.float32)
        if -(-x.shape[-1] // hop_length) < MIN_FRAMES:
            raise ValueError(f"audio is {seconds:.3f} s long{at}: an audio prompt needs at least "
                             f"{MIN_FRAMES} frames ({MIN_FRAMES * hop_length / model_rate:.3f} s)")
    return np.broadcast_to(x, (batch,) + x.shape[1:]).copy()                       # [B, C, samples]


def clips(audio, continue_from) -> int:
    """How many clips an unconditional continuation (``prompt=None``) continues."""
    if continue_from is not None:
        return int(getattr(continue_from, "codes", np.zeros((1,))).shape[0])
    if audio is None:
        raise ValueError("prompt=None is allowed only to continue audio (give audio or continue_from); "
                         "otherwise prompt must be a string or a non-empty list of strings")
    if isinstance(audio, (str, os.PathLike)):
        return 1
    x = np.asarray(audio)
    return int(x.shape[0]) if x.ndim == 3 else 1


def prefix_codes(model, s, batch: int, audio=None, sample_rate=None, continue_from=None) -> np.ndarray:
    """The codes ``[B, K, P]`` a run starts from: encoded ``audio``, ``continue_from``'s codes, or none."""
    c = model.config
    if audio is not None and continue_from is not None:
        raise ValueError("audio and continue_from: give one of them, not both")
    if continue_from is not None:
        codes = getattr(continue_from, "codes", None)
        if not isinstance(codes, np.ndarray) or codes.ndim != 3 or codes.shape[1] != c.num_codebooks:
            raise TypeError("continue_from must be a Generation of this model (codes [B, "
                            f"{c.num_codebooks}, frames])")
        if codes.shape[0] not in (1, batch):
            raise ValueError(f"continue_from holds {codes.shape[0]} clips for {batch} prompts")
        if codes.shape[-1] >= s.window_frames:
            raise ValueError(f"continue_from has {codes.shape[-1]} frames: it must be shorter than the model's "
                             f"window of {s.window_frames} frames; continue from its last frames "
                             "(a Generation's codes sliced) or use a longer duration instead")
        return np.broadcast_to(codes, (batch,) + codes.shape[1:]).astype(np.int64).copy()
    if audio is None:
        if sample_rate is not None:
            raise ValueError("sample_rate is the rate of an audio prompt: give audio too")
        return np.zeros((batch, c.num_codebooks, 0), dtype=np.int64)                # [B, K, 0]
    encode = getattr(model.codec, "encode", None)
    if encode is None:
        raise ValueError(f"{model.source} has no audio encoder (encodec_encode.onnx), so it cannot continue "
                         "audio: `python -m mglab export SRC OUT` writes one from the transformers checkpoint; "
                         "continue_from=<Generation> needs none")
    x, rate = read(audio, sample_rate)
    x = check(x, rate, channels=c.audio_channels, batch=batch, model_rate=c.sample_rate,
              hop_length=c.hop_length, window_frames=s.window_frames)
    return encode(x)                                                                # [B, K, P]
