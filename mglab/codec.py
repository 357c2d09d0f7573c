"""Stage 6: EnCodec decoding, codes ``[B, K, frames]`` -> audio ``[B, channels, frames * hop_length]``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .session import Session


class Codec:
    """``encodec_decode*.onnx``. Stereo checkpoints interleave left/right codebooks; each half is decoded
    separately and the two become the channels, as transformers does."""

    def __init__(self, onnx_path: Path, audio_channels: int = 1, providers=None):
        self.session = Session(onnx_path, providers)
        self.audio_channels = audio_channels

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Codes ``[B, K, frames]`` int64 -> audio ``[B, channels, samples]`` float32."""
        if self.audio_channels == 2:
            left, right = self._decode(codes[:, 0::2]), self._decode(codes[:, 1::2])
            return np.concatenate([left, right], axis=1)                          # [B, 2, samples]
        return self._decode(codes)                                                # [B, 1, samples]

    def _decode(self, codes: np.ndarray) -> np.ndarray:
        out = self.session.run({"audio_codes": codes[None].astype(np.int64)})     # [1, B, K, frames] in
        return out["audio_values"].astype(np.float32)                             # [B, 1, samples]
