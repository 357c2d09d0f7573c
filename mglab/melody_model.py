"""``MelodyMusicGen``: MusicGen-Melody, text and a melody to music (``mglab.load`` returns one for such an export)::

    melody (array or file) --audio/chroma.py--> one-hot chroma [B, F, 12] --conditioning.hook_chroma-->
    prompts --networks/text.py--> text [B, n, d_text]
            --decoding/melody.py + networks/melody.py (Conditioner)--> prefix [H*B, 235 + n, d]
    then as MusicGen: decoding/loop.py over networks/melody.py's MelodyDecoder, the codec, hooks.

What differs from :class:`~mglab.MusicGen`: ``generate(prompt, melody=..., melody_sample_rate=None)``; the
prefix and the steps must fit the model's positions (``max_position_embeddings``); one window only (no long
form: a later window would need the melody's chroma moved along with it, which transformers does not define);
no audio continuation; attention and residual-stream hooks are not available (key/value hooks are, the prefix's
positions first). Streaming works as for MusicGen.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from .audio import chroma as chroma_lib
from .core.config import MusicGenConfig, generation_defaults, read_json
from .core.hooks import CROSS_KV, RESID, TEXT, HookPoint, HookRegistry, hook_points
from .core.settings import check_prompts, resolve
from .decoding import guidance, longform, melody, sampling
from .decoding.continuation import read as read_audio
from .model import OTHER_LOADERS, MusicGen
from .nano.synth import SynthCodec
from .networks.codec import EncodecCodec
from .networks.melody import Conditioner, MelodyDecoder
from .networks.text import TextEncoder
from .onnx.export_melody import CONDITIONING
from .onnx.spec import locate

PARTS = ("text_encoder", "melody_condition", "decoder_model", "decoder_with_past_model", "encodec_decode")


def is_melody(path) -> bool:
    """A local export whose ``config.json`` says ``"mglab_conditioning": "prepend_melody"``."""
    config = Path(path) / "config.json"
    return config.is_file() and json.loads(config.read_text()).get("mglab_conditioning") == CONDITIONING


def melody_hook_points(num_layers: int) -> dict[str, HookPoint]:
    """MusicGen's points without cross-attention, attention and residual ones, plus ``conditioning.hook_chroma``."""
    points = {n: p for n, p in hook_points(num_layers).items()
              if p.kind not in (CROSS_KV, RESID) and not n.endswith(("self_attn", "cross_attn"))}
    at = list(points).index("text_encoder.hook_mask") + 1
    items = list(points.items())
    items.insert(at, ("conditioning.hook_chroma", HookPoint("[batch, frames, 12]", "once", TEXT)))
    return dict(items)


def load_melody(spec) -> "MelodyMusicGen":
    """What :func:`mglab.load` does for a melody export (split decoder, no merged one)."""
    if spec.decoder == "merged":
        raise ValueError("decoder='merged' is not allowed for a melody model: its export has the split pair only")
    found, _, dtypes, providers = locate(replace(spec, decoder="split"))
    root = found.config_dir
    raw, gen = read_json(root / "config.json"), read_json(root / "generation_config.json")
    config = MusicGenConfig.from_dict(raw, gen)
    dtype = lambda c: dtypes.get(c, dtypes["decoder_model"] if c == "melody_condition" else "fp32")   # noqa: E731
    paths = {c: found.find(c, dtype(c)) for c in PARTS}
    encoder = found.path("encodec_encode", "fp32")
    synth = raw.get("mglab_codec") == "synth"                                  # nano-melody: the synthesizer
    extra = {} if synth else {"encoder_path": encoder if encoder.is_file() else None}
    codec = (SynthCodec if synth else EncodecCodec)(paths["encodec_decode"], sample_rate=config.sample_rate,
                                                    hop_length=config.hop_length, channels=config.audio_channels,
                                                    providers=providers, **extra)
    text = TextEncoder(root / "tokenizer.json", paths["text_encoder"], providers)
    dec = MelodyDecoder({p: paths[p] for p in ("decoder_model", "decoder_with_past_model")}, config,
                        providers=providers, inplace_cache=spec.kv_cache == "inplace")
    model = MelodyMusicGen(config, text, dec, codec, Conditioner(paths["melody_condition"], providers),
                           defaults=generation_defaults(gen), spec=spec, files=found, paths=paths,
                           dtypes={c: dtype(c) for c in PARTS})
    model.provenance()
    return model


class Prompts(list):
    """The prompts of a run, carrying its melody chroma ``[B, F, 12]`` (or None) from ``_start`` to ``_frames``."""

    chroma = None


class MelodyMusicGen(MusicGen):
    """A MusicGen-Melody: :class:`~mglab.MusicGen` plus the melody condition (``conditioner``)."""

    def __init__(self, config, text, decoder, codec, conditioner: Conditioner, **kwargs):
        super().__init__(config, text, decoder, codec, **kwargs)
        self.conditioner = conditioner
        self._hooks = HookRegistry(melody_hook_points(config.num_layers))

    def generate(self, prompt, *, melody=None, melody_sample_rate: int | None = None, hooks=None,
                 hook_steps=None, progress: bool = False, **params):
        """Text and melody to music.

        Parameters
        ----------
        prompt : str, list of str or None
            None: no text (the null text condition), one clip per melody.
        melody : array, path, or list of them, optional
            ``[samples]``, ``[channels, samples]`` or ``[B, channels, samples]``, a sound file, or a list of
            clips/files: one for all prompts, or one per prompt. Its chroma (:func:`mglab.audio.chroma.chroma`,
            at most 30 s) conditions the model; None conditions on no melody (the null chroma).
        melody_sample_rate : int, optional
            Hz of an array ``melody`` (default the model's rate); a file's own rate is used for a file.
        **params
            As :meth:`mglab.MusicGen.generate` (``duration``, ``guidance_scale``, ``do_sample``, ``seed``, ...).
        """
        params.update(melody=melody, melody_sample_rate=melody_sample_rate)
        return super().generate(prompt, hooks=hooks, hook_steps=hook_steps, progress=progress, **params)

    def _start(self, prompt, params: dict, audio, sample_rate, continue_from):
        """Prompts (with the melody's chroma), settings and an empty prefix; every check before any model runs."""
        given, rate = params.pop("melody", None), params.pop("melody_sample_rate", None)
        if audio is not None or continue_from is not None:
            raise ValueError("audio= and continue_from= are not available for a melody model: continuation is "
                             "not supported (give the line as melody= instead)")
        clips = self._melody_clips(given, rate)
        if prompt is None:
            prompts = [""] * (len(clips[0]) if clips else 1)
        else:
            prompts = check_prompts(prompt)
        s = resolve(self.config, self.defaults, len(prompts), **params)
        if s.windows > 1:
            raise ValueError(f"{s.frames} frames do not fit one window of {s.window_frames}: long form is not "
                             "available for a melody model; ask for a shorter duration")
        run = Prompts(prompts)
        run.chroma = None if clips is None else self._chroma(clips, len(prompts))
        self._check_positions(run, s)
        prefix = np.zeros((len(prompts), self.config.num_codebooks, 0), dtype=np.int64)   # [B, K, 0]
        return run, s, prefix, prompt is None

    def _melody_clips(self, melody, rate):
        """``(clips, rate)``: the melody read and checked (files through soundfile), or None."""
        if melody is None:
            if rate is not None:
                raise ValueError(f"melody_sample_rate={rate!r} is given without a melody")
            return None
        items = melody if isinstance(melody, (list, tuple)) else None
        if items is None:
            if isinstance(melody, (str, os.PathLike)):
                x, r = read_audio(melody, rate)
                return [x[0]], r
            x = np.asarray(melody)
            items = list(x) if x.ndim == 3 else [x]
        clips, rates = [], set()
        for item in items:
            x, r = read_audio(item, rate) if isinstance(item, (str, os.PathLike)) else (np.asarray(item), rate)
            clips.append(x[0] if x.ndim == 3 else x)
            rates.add(r)
        if len(rates) > 1:
            raise ValueError(f"melody files have different sample rates {sorted(rates)}: give one rate")
        return clips, rates.pop()

    def _chroma(self, clips, batch: int) -> np.ndarray:
        """One-hot chroma ``[B, F, 12]``: one clip for all prompts, or one per prompt."""
        clips, rate = clips
        if len(clips) not in (1, batch):
            raise ValueError(f"melody has {len(clips)} clips for {batch} prompts: give one for all or one per prompt")
        c = chroma_lib.chroma(clips, self.config.sample_rate if rate is None else rate)   # [b, F, 12]
        return np.repeat(c, batch, axis=0) if len(clips) == 1 else c                        # [B, F, 12]

    def _check_positions(self, prompts: list[str], s) -> None:
        """The prefix and every step must fit the positional table: a clear error before any model runs."""
        if s.negative_prompt:
            self.text.tokenize(list(s.negative_prompt), argument="negative_prompt")      # refuses one too long
        text = self.text.tokenize(list(prompts))[0].shape[1]
        prefix = self.conditioner.chroma_length + text
        steps = s.frames + max(self.config.delays)
        limit = self.config.max_position_embeddings
        if prefix + steps > limit:
            most = limit - prefix - max(self.config.delays)
            raise ValueError(f"the prefix ({self.conditioner.chroma_length} chroma + {text} text positions) and "
                             f"{steps} decoding steps need {prefix + steps} positions; the model has "
                             f"max_position_embeddings={limit}: ask for at most {most} frames (a shorter "
                             "duration or fewer max_new_tokens)")

    def _frames(self, prompts, s, hooks, on_step, prefix, unconditional: bool = False):
        cond = melody.condition(self.text, self.conditioner, list(prompts), prompts.chroma, s.negative_prompt,
                                guidance.is_guided(s.guidance_scale), hooks, null=unconditional)
        rngs = sampling.make_rngs(s.seed, len(prompts))
        return longform.frames(self.decoder, hooks, cond, prefix, s, rngs, on_step)


OTHER_LOADERS.append((is_melody, load_melody))          # mglab.load(path) of a melody export comes here
