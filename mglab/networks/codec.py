"""Stage 7 of 7: the codec, codes ``[B, K, frames]`` <-> audio ``[B, channels, frames * hop_length]``.

:class:`Codec` is the interface the pipeline uses; any object with these members works (an EnCodec graph,
a synthesizer): ``decode``, optionally ``encode``, ``sample_rate``, ``hop_length``, ``channels``,
``num_codebooks`` and ``codebooks()``. :class:`EncodecCodec` runs ``encodec_decode*.onnx``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..onnx.session import Session

STREAM_CONTEXT = 50      # frames decoded before a chunk, for EnCodec's convolutions and LSTM to settle


def decode(codec, codes: np.ndarray, hooks) -> np.ndarray:
    """``codec.decode(codes)``, through ``codec.hook_latent`` when a hook wants it (``hook.layer`` is the
    channel: 0, or 0 and 1 for stereo)."""
    if not hooks.wants("codec.hook_latent"):
        return codec.decode(codes)
    return codec.decode(codes, latent_hook=lambda z, channel: hooks("codec.hook_latent", z, None, channel))


class Codec:
    """What the pipeline needs of a codec. Subclasses set the attributes and implement :meth:`decode`."""

    sample_rate: int            # audio samples per second
    hop_length: int             # audio samples per frame
    channels: int               # audio channels (2 for stereo checkpoints)
    num_codebooks: int          # K: codebooks per frame, all channels together
    encode = None               # a codec that can encode audio to codes overrides this with a method

    @property
    def frame_rate(self) -> float:
        """Frames per second: 50 for the 32 kHz EnCodec."""
        return self.sample_rate / self.hop_length

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Codes ``[B, K, frames]`` int64 -> audio ``[B, channels, frames * hop_length]`` float32."""
        raise NotImplementedError

    def codebooks(self) -> np.ndarray:
        """The codebook matrices ``[K, codebook_size, D]``: row i of codebook k is the vector token i adds."""
        raise NotImplementedError

    def stream_start(self, codes: np.ndarray, first: int) -> int:
        """The earliest frame a decode must include so that frames ``>= first`` of ``codes [B, K, frames]``
        sound as in a one-shot decode: 50 frames of context (EnCodec's convolutions and LSTM settle)."""
        return max(0, first - STREAM_CONTEXT)


class EncodecCodec(Codec):
    """``encodec_decode*.onnx``. Stereo checkpoints interleave left/right codebooks; each half is decoded
    separately and the two become the channels, as transformers does."""

    def __init__(self, onnx_path: Path, *, sample_rate: int, hop_length: int, channels: int = 1,
                 providers=None, encoder_path: Path | None = None):
        self.session = Session(onnx_path, providers)
        self.sample_rate, self.hop_length, self.channels = sample_rate, hop_length, channels
        per_channel = self.session.session.get_inputs()[0].shape[2]              # [1, B, K, frames]
        self.num_codebooks = per_channel * channels if isinstance(per_channel, int) else None
        self.encoder = Session(encoder_path, providers) if encoder_path else None
        if self.encoder is not None:
            self.encode = self._encode

    def _encode(self, audio: np.ndarray) -> np.ndarray:
        """Audio ``[B, channels, samples]`` float32 at ``sample_rate`` -> codes ``[B, K, frames]`` int64
        (``encodec_encode.onnx``; stereo: each channel through the mono codec, codebooks interleaved left,
        right, as transformers does)."""
        run = lambda x: self.encoder.run({"input_values": x})["audio_codes"][0]   # noqa: E731  [B, K/C, frames]
        if self.channels == 2:
            left, right = run(audio[:, :1]), run(audio[:, 1:])
            codes = np.empty((left.shape[0], 2 * left.shape[1], left.shape[2]), dtype=np.int64)
            codes[:, 0::2], codes[:, 1::2] = left, right
            return codes                                                          # [B, K, frames]
        return run(audio).astype(np.int64)                                        # [B, K, frames]

    def decode(self, codes: np.ndarray, latent_hook=None) -> np.ndarray:
        """Codes ``[B, K, frames]`` int64 -> audio ``[B, channels, samples]`` float32.

        ``latent_hook(latent, channel)`` sees (and may replace) the summed codebook vectors ``[B, D, frames]``
        before the codec's decoder network; the graph is then run in two parts cut there."""
        if self.channels == 2:
            left = self._decode(codes[:, 0::2], latent_hook, 0)
            right = self._decode(codes[:, 1::2], latent_hook, 1)
            return np.concatenate([left, right], axis=1)                          # [B, 2, samples]
        return self._decode(codes, latent_hook, 0)                                # [B, 1, samples]

    def _decode(self, codes: np.ndarray, latent_hook=None, channel: int = 0) -> np.ndarray:
        frames = codes.shape[-1]
        short = self.min_frames - frames
        if short > 0:                                       # repeat the last frame, then trim its audio away
            codes = np.concatenate([codes, np.repeat(codes[..., -1:], short, axis=-1)], axis=-1)
        feeds = {"audio_codes": codes[None].astype(np.int64)}                     # [1, B, K, frames]
        if latent_hook is None:
            out = self.session.run(feeds)
        else:
            to_latent, to_audio = self._latent_sessions()
            latent = to_latent.run(feeds)["latent"]                               # [B, D, frames]
            out = to_audio.run({**feeds, "latent": latent_hook(latent, channel)})
        audio = out["audio_values"].astype(np.float32)                            # [B, 1, samples]
        return audio[..., : frames * self.hop_length] if short > 0 else audio

    def _latent_sessions(self) -> tuple[Session, Session]:
        if getattr(self, "_latent", None) is None:
            from ..onnx import codec_graph as graph

            k = self.num_codebooks // self.channels
            self._latent = tuple(Session(p, self.session.session.get_providers())
                                 for p in graph.latent_split(self.session.path, k))
        return self._latent

    @property
    def min_frames(self) -> int:
        """The fewest frames the graph decodes. An export keeps the branch of its convolutions' reflect padding
        for long inputs, which fails below a few frames (3 for the 32 kHz EnCodec); shorter codes are padded
        with their last frame and the audio trimmed. Found once, by decoding silence."""
        if getattr(self, "_min_frames", None) is None:
            import onnxruntime as ort

            quiet = ort.RunOptions()
            quiet.log_severity_level = 4                    # the failing sizes are expected: no error log
            k = (self.num_codebooks or 4) // self.channels
            for frames in range(1, 65):
                try:
                    self.session.session.run(None, {"audio_codes": np.zeros((1, 1, k, frames), np.int64)}, quiet)
                except Exception:                           # noqa: BLE001 - ONNX Runtime's errors vary by op
                    continue
                self._min_frames = frames
                break
            else:
                raise ValueError(f"{self.session.path.name} decodes no code sequence of 1 to 64 frames")
        return self._min_frames

    def codebooks(self) -> np.ndarray:
        """``[K, codebook_size, D]``: the tables the graph's first K same-shaped ``Gather`` lookups read
        (:func:`mglab.onnx.codec_graph.codebook_lookups`)."""
        from ..onnx import codec_graph as graph

        k = self.num_codebooks // self.channels if self.num_codebooks else 0
        tables = graph.codebook_tables(self.session.path, k) if k else []
        if not tables:
            raise ValueError(f"{self.session.path.name}: no codebook tables found (plain Gather initializers "
                             "of rank 2); a quantized codec keeps them in another form")
        return np.stack(tables)                                                   # [K, size, D]
