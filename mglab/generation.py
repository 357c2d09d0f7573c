"""The result of ``MusicGen.generate``: audio, codes, the delayed token matrix and the settings used."""

from __future__ import annotations

import base64
import io
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf


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
        The resolved generation settings (see :class:`mglab.settings.Settings`).
    """

    audio: np.ndarray
    sample_rate: int
    codes: np.ndarray
    tokens: np.ndarray
    prompts: list[str]
    settings: dict = field(default_factory=dict)

    @property
    def duration(self) -> float:
        """Seconds of audio per prompt."""
        return self.audio.shape[-1] / self.sample_rate

    def save(self, path) -> list[Path]:
        """Write WAV files: ``path`` for a single prompt, ``<stem>-<i><suffix>`` per prompt for a batch.

        Each file is written to a temporary name in the same folder, then renamed, so no half-written file
        is ever left at ``path``.
        """
        path = Path(path)
        if not path.parent.is_dir():
            raise FileNotFoundError(f"path={str(path)!r}: the folder {str(path.parent)!r} does not exist")
        n = len(self.audio)
        paths = [path] if n == 1 else [path.with_name(f"{path.stem}-{i}{path.suffix}") for i in range(n)]
        for p, audio in zip(paths, self.audio):
            fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
            os.close(fd)
            try:
                sf.write(tmp, audio.T, self.sample_rate, format="WAV", subtype="FLOAT")
                os.replace(tmp, p)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        return paths

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
