"""``mglab.load`` and ``MusicGen.generate``: the whole pipeline, top to bottom.

    prompts --tokenize/T5--> hidden [B, n, d] --(+ null condition)--> [2B, n, d]
    for each step t:  tokens[:, :, t] --decoder--> logits [2B*K, V]
                      --guidance--> [B, K, V] --warp/sample--> [B, K] --delay mask--> tokens[:, :, t+1]
    tokens [B, K, L] --undelay--> codes [B, K, frames] --EnCodec--> audio [B, channels, samples]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import delay, files, guidance, sampling
from .cache import ActivationCache
from .codec import Codec
from .config import MusicGenConfig, generation_defaults, read_json
from .decoder import Decoder
from .generation import Generation
from .hooks import HookRegistry, hook_points, is_attention, is_kv, match
from .settings import check_prompts, resolve
from .text import TextEncoder

DTYPES = ("fp32", "q8")


def load(path, *, dtype: str = "fp32", decoder: str = "auto", providers=None) -> "MusicGen":
    """Load a MusicGen ONNX export from a local folder (Xenova ``onnx/`` layout or optimum's flat one).

    Parameters
    ----------
    path : str or Path
        Folder with ``config.json``, ``tokenizer.json`` and the ``.onnx`` files.
    dtype : {"fp32", "q8"}
        Variant of the graphs (``q8`` = the ``*_quantized.onnx`` files).
    decoder : {"auto", "merged", "split"}
        ``merged`` runs ``decoder_model_merged``; ``split`` the ``decoder_model`` +
        ``decoder_with_past_model`` pair; ``auto`` takes merged when present.
    providers : list of str, optional
        ONNX Runtime execution providers; default CPU.

    Examples
    --------
    >>> import mglab
    >>> model = mglab.load("data/models/tiny-musicgen")
    >>> model.generate("lofi piano", duration=0.5, seed=0).codes.shape
    (1, 4, 25)
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not allowed: dtype must be one of {list(DTYPES)}")
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"path={str(path)!r}: no such model folder")
    for name in ("config.json", "tokenizer.json"):
        if not (root / name).is_file():
            raise FileNotFoundError(f"path={str(path)!r}: {name} is missing from the model folder")
    layout = files.choose_decoder(root, decoder, dtype)
    return MusicGen(root, dtype=dtype, layout=layout, providers=providers)


class MusicGen:
    """A loaded MusicGen: text encoder, decoder, codec, and the model's generation defaults."""

    def __init__(self, root: Path, *, dtype: str, layout: str, providers=None):
        self.root, self.dtype, self.layout = Path(root), dtype, layout
        gen = read_json(self.root / "generation_config.json")
        self.config = MusicGenConfig.from_dict(read_json(self.root / "config.json"), gen)
        self.defaults = generation_defaults(gen)
        self.text = TextEncoder(self.root / "tokenizer.json", files.find(self.root, "text_encoder", dtype),
                                providers)
        self.decoder = Decoder(self.root, self.config, dtype=dtype, layout=layout, providers=providers)
        self.codec = Codec(files.find(self.root, "encodec_decode", dtype), self.config.audio_channels,
                           providers)
        self._hooks = HookRegistry(hook_points(self.config.num_layers))

    def hook_names(self) -> dict:
        """Every hook point: ``{name: HookPoint(shape, when, editable)}``, in pipeline order."""
        return dict(self._hooks.points)

    def hooks(self, hooks):
        """``with model.hooks([(name_or_filter, fn), ...]):`` attaches hooks for the block only.

        ``name_or_filter`` is a hook name, a list of names, or a predicate on names. Hooks are removed on
        exit, also when the block raises, so nothing leaks between notebook cells.
        """
        return self._hooks.scope(hooks)

    def run_with_cache(self, prompt, *, names_filter=None, steps=None, **generate_kwargs):
        """Generate and record hook values: ``(Generation, ActivationCache)``.

        Parameters
        ----------
        names_filter : str, list of str or callable, optional
            Which hook points to record (default all). Attention points make the decoder run a graph
            rewritten to output attention probabilities.
        steps : slice or list of int, optional
            Which decoding steps to record per-step points at (default all). Key/value points always record
            every step's new position (the cache at step t needs all of them; it costs O(steps)).
        **generate_kwargs
            Passed to :meth:`generate` (``hooks=`` included).
        """
        names = match(names_filter, self._hooks.points)
        bad_slice = isinstance(steps, slice) and any(v is not None and v < 0 for v in
                                                     (steps.start, steps.stop, steps.step))
        if bad_slice or (steps is not None and not isinstance(steps, (slice, list, tuple, range))):
            raise ValueError(f"steps={steps!r} is not allowed: steps must be a slice with non-negative "
                             "bounds or a list of step indices")
        cache = ActivationCache()

        def record(value, hook):
            if hook.step is None or steps is None or is_kv(hook.name) or _selected(hook.step, steps):
                cache.record(value, hook)

        user = list(generate_kwargs.pop("hooks", None) or [])
        gen = self.generate(prompt, hooks=user + [(names, record)], **generate_kwargs)
        return gen, cache

    def __repr__(self) -> str:
        c = self.config
        return (f"MusicGen({str(self.root)!r}, dtype={self.dtype!r}, decoder={self.layout!r}, "
                f"layers={c.num_layers}, codebooks={c.num_codebooks}, sample_rate={c.sample_rate})")

    def generate(self, prompt, *, duration=None, max_new_tokens=None, guidance_scale=None, temperature=None,
                 top_k=None, top_p=None, do_sample=None, seed=None, hooks=None,
                 progress: bool = False) -> Generation:
        """Text to music.

        Parameters
        ----------
        prompt : str or list of str
            One prompt, or a batch (padded with an attention mask).
        duration : float, optional
            Seconds of audio: exactly ``round(duration * frame_rate)`` frames. Exclusive with ``max_new_tokens``.
        max_new_tokens : int, optional
            Decoding steps; frames = ``max_new_tokens + 1 - K``. Default from ``generation_config.json``.
        guidance_scale : float, optional
            Classifier-free guidance; 1 runs the conditional model alone.
        temperature, top_k, top_p, do_sample :
            As in transformers; ``do_sample=False`` is greedy decoding.
        seed : int or list of int, optional
            Seeds the sampler; a prompt gives the same tokens alone or inside any batch.
        hooks : list of (name_or_filter, fn), optional
            Hooks for this call only (see :mod:`mglab.hooks`), on top of those of ``with model.hooks(...)``.
        progress : bool
            Show a progress bar over decoding steps.

        Returns
        -------
        Generation
        """
        prompts = check_prompts(prompt)
        s = resolve(self.config, self.defaults, len(prompts), duration=duration, max_new_tokens=max_new_tokens,
                    guidance_scale=guidance_scale, temperature=temperature, top_k=top_k, top_p=top_p,
                    do_sample=do_sample, seed=seed)
        with self._hooks.scope(hooks):
            return self._generate(prompts, s, progress)

    def _generate(self, prompts: list[str], s, progress: bool) -> Generation:
        c, hook = self.config, self._hooks
        batch, k = len(prompts), c.num_codebooks
        guided = guidance.is_guided(s.guidance_scale)
        rngs = sampling.make_rngs(s.seed, batch)
        attention = hook.wants_any(is_attention)

        ids, mask = self.text.tokenize(prompts)                                 # [B, n]
        hidden = hook("text_encoder.hook_hidden", self.text.encode(ids, mask))  # [B, n, d]
        mask = hook("text_encoder.hook_mask", mask)                             # [B, n]
        if guided:
            hidden, mask = guidance.null_condition(hidden, mask)                # [2B, n, d], [2B, n]
        halves = 2 if guided else 1

        length = s.max_new_tokens + 1
        pattern = delay.build_delay_pattern(k, length, c.decoder_start_token_id, c.delays)   # [K, L]
        tokens = np.full((batch, k, length), c.decoder_start_token_id, dtype=np.int64)     # [B, K, L]
        tokens[:, :, :1] = delay.apply_delay_pattern(tokens[:, :, :1], pattern)

        cache = None
        for t in _steps(s.max_new_tokens, progress):
            x = hook("decoder.hook_input_ids", tokens[:, :, t], t)              # [B, K]
            x = np.tile(x.reshape(-1, 1), (halves, 1))                          # [H*B*K, 1]
            logits, cache, attn = self.decoder.step(x, hidden, mask, cache, attention)   # [H*B*K, V]
            if hook:
                cache = self.decoder.run_hooks(hook, t, cache, attn)
            cond, uncond = guidance.split(logits, batch, k)                     # [B, K, V] each
            scores = hook("guidance.hook_cond_logits", cond, t)                 # [B, K, V]
            if guided:
                uncond = hook("guidance.hook_uncond_logits", uncond, t)         # [B, K, V]
                scores = guidance.guide(scores, uncond, s.guidance_scale)       # [B, K, V]
            scores = hook("guidance.hook_logits", scores, t)                    # [B, K, V]
            if s.do_sample:
                scores = sampling.warp(scores, s.temperature, s.top_k, s.top_p)   # [B, K, V]
            scores = hook("sampler.hook_logits", scores, t)                     # [B, K, V]
            nxt = sampling.sample(scores, rngs) if s.do_sample else sampling.greedy(scores)   # [B, K]
            nxt = hook("sampler.hook_tokens", nxt, t)                           # [B, K]
            forced = pattern[:, t + 1]                                          # [K]
            column = np.where(forced == delay.PREDICT, nxt, forced)            # [B, K]
            tokens[:, :, t + 1] = hook("delay.hook_tokens", column, t)          # [B, K]

        codes = hook("codec.hook_codes", delay.undelay(tokens, c.delays))       # [B, K, frames]
        audio = hook("codec.hook_audio", self.codec.decode(codes))              # [B, C, samples]
        return Generation(audio=audio, sample_rate=c.sample_rate, codes=codes, tokens=tokens,
                          prompts=prompts, settings=s.to_dict())


def _selected(step: int, steps) -> bool:
    """Is decoding step ``step`` in ``steps`` (a slice with non-negative bounds, or a list of indices)?"""
    if isinstance(steps, slice):
        start, stride = steps.start or 0, steps.step or 1
        return step >= start and (steps.stop is None or step < steps.stop) and (step - start) % stride == 0
    return step in steps


def _steps(n: int, progress: bool):
    if not progress:
        return range(n)
    from tqdm.auto import tqdm
    return tqdm(range(n), desc="decoding", unit="step")
