"""The result of ``MusicGen.generate``: audio, codes, the delayed token matrix and the settings used."""

from __future__ import annotations

import base64
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from .core.fileio import atomic_write_set


@dataclass
class Generation:
    """One generated batch.

    Attributes
    ----------
    audio : np.ndarray [batch, channels, samples] float32
    sample_rate : int
    codes : np.ndarray [batch, K, frames] int64
        De-delayed codebook indices, what EnCodec decodes.
    tokens : np.ndarray [batch, K, steps + 1] int64
        The delayed matrix the decoder saw, start token and forced pads included.
    prompts : list of str
    settings : dict
        The resolved generation settings (see :class:`mglab.core.settings.Settings`), seed included.
    model : dict
        Where the tokens came from: source (path or Hub id), layout, decoder, and each graph's variant,
        file name and SHA-256.
    mglab_version : str
    prompt_frames : int
        Frames at the start of ``codes`` and ``audio`` that were given (an audio prompt or the Generation
        continued), not generated; 0 for text-to-music.
    """

    audio: np.ndarray
    sample_rate: int
    codes: np.ndarray
    tokens: np.ndarray
    prompts: list[str]
    settings: dict = field(default_factory=dict)
    model: dict = field(default_factory=dict)
    mglab_version: str = ""
    prompt_frames: int = 0

    @property
    def duration(self) -> float:
        """Seconds of audio per prompt."""
        return self.audio.shape[-1] / self.sample_rate

    def save(self, path) -> list[Path]:
        """Write the audio as WAV and, beside it, what reproduces it; returns the WAV paths.

        ``path`` for a single prompt, ``<stem>-<i><suffix>`` per prompt for a batch; ``<stem>.json`` (prompts,
        settings, model and files, version) and ``<stem>.npz`` (codes, tokens) next to them. The files are
        written as one set (:func:`mglab.core.fileio.atomic_write_set`): temporary names first, then renamed; a
        failure part-way, Ctrl-C included, leaves an earlier save exactly as it was.
        """
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path={path!r} is not allowed: path must name a WAV file (str or Path)")
        if not Path(path).name:
            raise ValueError(f"path={path!r} is not allowed: path must name a WAV file (str or Path)")
        path = Path(path)
        if not path.parent.is_dir():
            raise FileNotFoundError(f"path={str(path)!r}: the folder {str(path.parent)!r} does not exist")
        n = len(self.audio)
        paths = [path] if n == 1 else [path.with_name(f"{path.stem}-{i}{path.suffix}") for i in range(n)]
        writers = {p: (lambda tmp, a=audio: sf.write(tmp, a.T, self.sample_rate, format="WAV", subtype="FLOAT"))
                   for p, audio in zip(paths, self.audio)}
        meta = {"prompts": self.prompts, "sample_rate": self.sample_rate, "settings": self.settings,
                "model": self.model, "mglab_version": self.mglab_version, "wav": [p.name for p in paths],
                "prompt_frames": self.prompt_frames}
        writers[path.with_suffix(".npz")] = lambda tmp: np.savez(tmp, codes=self.codes, tokens=self.tokens)
        writers[path.with_suffix(".json")] = lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=2))
        atomic_write_set(writers)
        return paths

    @classmethod
    def load(cls, path) -> "Generation":
        """Read back what :meth:`save` wrote (``path`` as given to ``save``)."""
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path={path!r} is not allowed: path must be a str or Path (what save was given)")
        path = Path(path)
        if not path.name or not path.with_suffix(".json").is_file():
            raise FileNotFoundError(f"path={str(path)!r}: no .json beside it (was it written by Generation.save?)")
        meta = json.loads(path.with_suffix(".json").read_text())
        audio = np.stack([sf.read(path.with_name(name), dtype="float32", always_2d=True)[0].T
                          for name in meta["wav"]])                                  # [B, C, samples]
        with np.load(path.with_suffix(".npz")) as arrays:
            codes, tokens = arrays["codes"], arrays["tokens"]
        return cls(audio=audio, sample_rate=meta["sample_rate"], codes=codes, tokens=tokens,
                   prompts=meta["prompts"], settings=meta["settings"], model=meta["model"],
                   mglab_version=meta["mglab_version"], prompt_frames=meta.get("prompt_frames", 0))

    def wav_bytes(self, index: int = 0) -> bytes:
        """Prompt ``index`` as WAV bytes (16-bit PCM)."""
        buf = io.BytesIO()
        sf.write(buf, np.clip(self.audio[index].T, -1, 1), self.sample_rate, format="WAV", subtype="PCM_16")
        return buf.getvalue()

    def _repr_html_(self) -> str:
        rows = []
        for i, prompt in enumerate(self.prompts):
            data = base64.b64encode(self.wav_bytes(i)).decode()
            rows.append(f"<div><b>{_escape(prompt)}</b> ({self.duration:.2f} s)<br>"
                        f'<audio controls src="data:audio/wav;base64,{data}"></audio></div>')
        return "\n".join(rows)

    def __repr__(self) -> str:
        return (f"Generation(prompts={self.prompts!r}, audio={tuple(self.audio.shape)}, "
                f"codes={tuple(self.codes.shape)}, sample_rate={self.sample_rate}, "
                f"duration={self.duration:.2f}s)")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
