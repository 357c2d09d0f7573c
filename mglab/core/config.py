"""Model and generation configuration, read from ``config.json`` and ``generation_config.json``.

Recent transformers omit every value equal to the class default when they write ``config.json`` (the
decoder's ``pad_token_id`` and ``num_codebooks`` are often missing), so each value is read with the
``MusicgenDecoderConfig`` / ``EncodecConfig`` / ``T5Config`` default behind it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

# Class defaults of transformers' configs, used where config.json leaves a value out.
DECODER_DEFAULTS = dict(vocab_size=2048, max_position_embeddings=2048, num_hidden_layers=24,
                        num_attention_heads=16, hidden_size=1024, num_codebooks=4, audio_channels=1,
                        pad_token_id=2048, bos_token_id=2048)
ENCODEC_DEFAULTS = dict(sampling_rate=24000, upsampling_ratios=[8, 5, 4, 2], audio_channels=1,
                        codebook_size=1024)
T5_DEFAULTS = dict(d_model=512)
# transformers' GenerationConfig defaults, behind generation_config.json.
GENERATION_DEFAULTS = dict(do_sample=False, guidance_scale=None, temperature=1.0, top_k=50, top_p=1.0,
                           max_length=20, max_new_tokens=None, pad_token_id=None,
                           decoder_start_token_id=None)


@dataclass(frozen=True)
class MusicGenConfig:
    """What the pipeline needs to know about a MusicGen checkpoint."""

    num_codebooks: int          # K: codebooks per frame (8 for stereo checkpoints)
    vocab_size: int             # entries per codebook; the decoder predicts ids in [0, vocab_size)
    pad_token_id: int           # = vocab_size in every public checkpoint
    decoder_start_token_id: int
    audio_channels: int
    sample_rate: int
    hop_length: int             # audio samples per frame
    num_layers: int
    num_heads: int
    hidden_size: int
    text_hidden_size: int
    max_position_embeddings: int

    @property
    def frame_rate(self) -> float:
        """Frames (decoding steps) per second of audio: 50 for the 32 kHz EnCodec."""
        return self.sample_rate / self.hop_length

    @property
    def head_dim(self) -> int:
        """Width of one attention head: ``hidden_size // num_heads``."""
        return self.hidden_size // self.num_heads

    @property
    def delays(self) -> tuple[int, ...]:
        """Delay of each codebook: ``0..K-1``, or ``0,0,1,1,..`` when stereo codebooks are interleaved."""
        k = self.num_codebooks
        return tuple(range(k)) if self.audio_channels == 1 else tuple(i // 2 for i in range(k))

    @classmethod
    def from_dict(cls, cfg: dict, generation: dict | None = None) -> "MusicGenConfig":
        """The config from transformers' ``config.json`` (and ``generation_config.json``), defaults filled in."""
        dec = {**DECODER_DEFAULTS, **cfg.get("decoder", {})}
        enc = {**ENCODEC_DEFAULTS, **cfg.get("audio_encoder", {})}
        txt = {**T5_DEFAULTS, **cfg.get("text_encoder", {})}
        gen = generation or {}
        pad = gen.get("pad_token_id", dec["pad_token_id"])
        return cls(
            num_codebooks=dec["num_codebooks"], vocab_size=dec["vocab_size"], pad_token_id=pad,
            decoder_start_token_id=gen.get("decoder_start_token_id", dec["bos_token_id"]),
            audio_channels=dec["audio_channels"], sample_rate=enc["sampling_rate"],
            hop_length=math.prod(enc["upsampling_ratios"]), num_layers=dec["num_hidden_layers"],
            num_heads=dec["num_attention_heads"], hidden_size=dec["hidden_size"],
            text_hidden_size=txt["d_model"], max_position_embeddings=dec["max_position_embeddings"])


def read_json(path: Path) -> dict:
    """The JSON file at ``path``, or ``{}`` when there is none."""
    return json.loads(Path(path).read_text()) if Path(path).exists() else {}


def generation_defaults(generation: dict) -> dict:
    """``generation_config.json`` over transformers' own defaults: what ``generate`` uses when not told."""
    return {k: generation.get(k, v) if generation.get(k) is not None else v
            for k, v in GENERATION_DEFAULTS.items()}
