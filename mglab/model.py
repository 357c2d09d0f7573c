"""``mglab.load`` and ``MusicGen.generate``: the whole pipeline, top to bottom.

    prompts --tokenize/T5--> hidden [B, n, d] --(+ null condition)--> [2B, n, d]
    for each step t:  tokens[:, :, t] --decoder--> logits [2B*K, V]
                      --guidance--> [B, K, V] --warp/sample--> [B, K] --delay mask--> tokens[:, :, t+1]
    tokens [B, K, L] --undelay--> codes [B, K, frames] --EnCodec--> audio [B, channels, samples]
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from . import delay, files, guidance, hub, sampling
from .cache import ActivationCache
from .codec import Codec
from .config import MusicGenConfig, generation_defaults, read_json
from .decoder import Decoder
from .generation import Generation
from .session import resolve_providers
from .hooks import HookRegistry, hook_points, is_attention, is_kv, match
from .settings import check_number, check_prompts, resolve
from .text import TextEncoder
from .version import __version__

def load(path, *, dtype="fp32", decoder: str = "auto", providers=None, device: str | None = None,
         size: str | None = None, revision: str | None = None, local_files_only: bool = False,
         cache_dir=None, kv_cache: str = "inplace") -> "MusicGen":
    """Load a MusicGen ONNX export: a local folder or a Hugging Face Hub id.

    Parameters
    ----------
    path : str or Path
        A folder (``Xenova/musicgen-small`` layout with ``onnx/``, optimum's flat export, or the
        ``gabotechs/music_gen`` per-size layout), or a Hub id such as ``"Xenova/musicgen-small"``, of which
        only the files this variant needs are downloaded (huggingface_hub's cache and progress bars).
    dtype : str or dict
        ``"fp32"``, ``"fp16"``, ``"q8"``, ``"int8"``, ``"uint8"`` or ``"q4"``, or a dict per component as in
        transformers.js: ``{"text_encoder": "fp32", "decoder_model_merged": "q8", "encodec_decode": "fp32"}``
        (unnamed components are fp32). A variant that is not there is an error listing those that are.
    decoder : {"auto", "merged", "split"}
        ``merged`` runs ``decoder_model_merged``; ``split`` the ``decoder_model`` +
        ``decoder_with_past_model`` pair; ``auto`` takes merged when present.
    providers : list, optional
        ONNX Runtime execution providers (names or ``(name, options)``). Missing ones fall back to CPU with a
        warning. Exclusive with ``device``.
    device : {"cpu", "cuda", "coreml", "dml"}, optional
        Shorthand for ``providers``.
    size : str, optional
        ``"small"``, ``"medium"`` or ``"large"`` for ``gabotechs/music_gen``-shaped repositories.
    kv_cache : {"inplace", "concat"}
        ``inplace`` (CPU): later steps run the with-past graph rewritten to write one position a step into a
        preallocated cache (:mod:`mglab.inplace`); ``concat``: the exported graph, which copies the whole
        growing cache every step. ``inplace`` falls back to ``concat``, with a warning, for a graph it does not
        recognise.
    revision, local_files_only, cache_dir :
        Passed to ``huggingface_hub.snapshot_download`` for Hub ids (``HF_HUB_OFFLINE=1`` is honoured too).

    Examples
    --------
    >>> import mglab
    >>> model = mglab.load("data/models/tiny-musicgen")
    >>> model.generate("lofi piano", duration=0.5, seed=0).codes.shape
    (1, 4, 25)
    """
    dtypes = files.component_dtypes(dtype)
    if decoder not in ("auto", "merged", "split"):
        raise ValueError(f"decoder={decoder!r} is not known; allowed: 'auto', 'merged', 'split'")
    if kv_cache not in ("inplace", "concat"):
        raise ValueError(f"kv_cache={kv_cache!r} is not known; allowed: 'inplace', 'concat'")
    providers = resolve_providers(providers, device)
    source = str(path)
    root = Path(path).expanduser()
    if not root.exists():
        if not hub.is_repo_id(source):
            raise FileNotFoundError(f"path={source!r}: no such model folder, and not a Hub id (owner/name)")
        size = size or ("small" if source.lower() == "gabotechs/music_gen" else None)
        kw = dict(size=size, revision=revision, local_files_only=local_files_only, cache_dir=cache_dir)
        want = ["text_encoder", "encodec_decode"]
        want += ["decoder_model_merged"] if decoder != "split" else ["decoder_model", "decoder_with_past_model"]
        root = hub.download(source, {c: dtypes[c] for c in want}, **kw)
        found = files.ModelFiles(root, size)
        if decoder == "auto" and not found.path("decoder_model_merged", dtypes["decoder_model_merged"]).is_file():
            split = ["decoder_model", "decoder_with_past_model"]
            root = hub.download(source, {c: dtypes[c] for c in split}, **kw)
    elif not root.is_dir():
        raise FileNotFoundError(f"path={source!r} is a file, not a model folder")
    found = files.ModelFiles(root, size)
    for name in ("config.json", "tokenizer.json"):
        if not (found.config_dir / name).is_file():
            raise FileNotFoundError(f"path={source!r}: {name} is missing from {found.config_dir}")
    layout = found.choose_decoder(decoder, dtypes)
    return MusicGen(found, dtypes=dtypes, layout=layout, providers=providers, source=source, kv_cache=kv_cache)


class MusicGen:
    """A loaded MusicGen: text encoder, decoder, codec, and the model's generation defaults."""

    def __init__(self, found: files.ModelFiles, *, dtypes: dict, layout: str, providers=None, source=None,
                 kv_cache: str = "inplace"):
        self.files, self.dtypes, self.layout = found, dtypes, layout
        self.source = source or str(found.root)
        self.root = found.config_dir
        gen = read_json(self.root / "generation_config.json")
        self.config = MusicGenConfig.from_dict(read_json(self.root / "config.json"), gen)
        self.defaults = generation_defaults(gen)
        parts = ["decoder_model_merged"] if layout == "merged" else ["decoder_model", "decoder_with_past_model"]
        self.paths = {c: found.find(c, dtypes[c]) for c in ["text_encoder", *parts, "encodec_decode"]}
        self.text = TextEncoder(self.root / "tokenizer.json", self.paths["text_encoder"], providers)
        self.codec = Codec(self.paths["encodec_decode"], self.config.audio_channels, providers)
        self._check_graphs()
        self.decoder = Decoder({p: self.paths[p] for p in parts}, self.config, providers=providers,
                               inplace_cache=kv_cache == "inplace")
        self._provenance = None
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

    def _check_graphs(self) -> None:
        """The config must describe the graphs: codebooks and layers agree, or a clear error now."""
        c = self.config
        codes = self.codec.session.session.get_inputs()[0].shape
        if isinstance(codes[2], int) and codes[2] != c.num_codebooks // c.audio_channels:
            raise ValueError(f"config.json says {c.num_codebooks} codebooks but encodec_decode takes {codes[2]}")

    @property
    def dtype(self):
        """The variant: one name if every component uses it, else the dict per component."""
        used = {c: d for c, d in self.dtypes.items() if c in self.paths}
        return next(iter(used.values())) if len(set(used.values())) == 1 else used

    @property
    def providers(self) -> list[str]:
        return self.decoder.providers

    def info(self) -> dict:
        """Sizes, layers, heads, codebooks, rates, variant and file per component, providers."""
        c = self.config
        return {
            "source": self.source, "layout": self.files.layout, "size": self.files.size, "decoder": self.layout,
            "layers": c.num_layers, "heads": c.num_heads, "hidden_size": c.hidden_size,
            "codebooks": c.num_codebooks, "vocab_size": c.vocab_size, "audio_channels": c.audio_channels,
            "sample_rate": c.sample_rate, "frame_rate": c.frame_rate,
            "components": {name: {"dtype": self.dtypes[name], "file": str(path),
                                  "mb": round(_file_bytes(path) / 1e6, 2)}
                           for name, path in self.paths.items()},
            "providers": self.providers,
        }

    def __repr__(self) -> str:
        c = self.config
        return (f"MusicGen({self.source!r}, dtype={self.dtype!r}, decoder={self.layout!r}, "
                f"layers={c.num_layers}, codebooks={c.num_codebooks}, sample_rate={c.sample_rate}, "
                f"providers={self.providers})")

    def _repr_html_(self) -> str:
        i = self.info()
        rows = "".join(f"<tr><td>{k}</td><td>{v['dtype']}</td><td>{v['mb']} MB</td><td>{Path(v['file']).name}"
                       f"</td></tr>" for k, v in i["components"].items())
        return (f"<b>MusicGen</b> {i['source']} ({i['layout']} layout, {i['decoder']} decoder): "
                f"{i['layers']} layers x {i['hidden_size']}, {i['heads']} heads, {i['codebooks']} codebooks of "
                f"{i['vocab_size']}, {i['sample_rate']} Hz, {i['frame_rate']:g} frames/s, "
                f"providers {', '.join(i['providers'])}<table>{rows}</table>")

    def generate(self, prompt, *, duration=None, max_new_tokens=None, guidance_scale=None, temperature=None,
                 top_k=None, top_p=None, do_sample=None, seed=None, negative_prompt=None, window=None,
                 extend_stride=None, on_nonfinite="raise", hooks=None, progress: bool = False) -> Generation:
        """Text to music.

        Parameters
        ----------
        prompt : str or list of str
            One prompt, or a batch (padded with an attention mask).
        duration : float, optional
            Seconds of audio: exactly ``round(duration * frame_rate)`` frames. Exclusive with ``max_new_tokens``.
        max_new_tokens : int, optional
            Decoding steps of a single window; frames = ``max_new_tokens + 1 - K``. Default from
            ``generation_config.json``.
        guidance_scale : float, optional
            Classifier-free guidance; 1 runs the conditional model alone.
        temperature, top_k, top_p, do_sample :
            As in transformers; ``do_sample=False`` is greedy decoding.
        seed : int or list of int, optional
            Seeds the sampler; a prompt gives the same tokens alone or inside any batch.
        negative_prompt : str or list of str, optional
            Replaces the null condition of the unconditional half with this prompt's encoding, so guidance
            pushes away from it (as the negative-prompting demos do with transformers).
        window, extend_stride : float, optional
            Seconds the model decodes in one go (default ``max_length / frame_rate``, 30 s for the public
            models) and, past that, how far each new window moves (default 0.6 window: audiocraft's 18 s of
            30). Each new window is prompted with the last ``window - extend_stride`` seconds of codes.
        on_nonfinite : {"raise", "replace"}
            NaN or inf logits stop with an error naming the step and codebook, or are replaced (NaN and -inf
            by -1e9, +inf by 1e9).
        hooks : list of (name_or_filter, fn), optional
            Hooks for this call only (see :mod:`mglab.hooks`), on top of those of ``with model.hooks(...)``.
        progress : bool
            Show a progress bar over decoding steps.

        Returns
        -------
        Generation
        """
        prompts, s = self._settings(prompt, locals())
        with self._hooks.scope(hooks):
            frames, tokens = [], None
            for frame, tokens in self._frames(prompts, s, progress):
                frames.append(frame)
            return self._finish(prompts, s, frames, tokens if s.windows == 1 else None)

    def stream(self, prompt, *, chunk_duration: float = 1.0, hooks=None, progress: bool = False, **kwargs):
        """Yield audio chunks ``[batch, channels, samples]`` while decoding goes on.

        Each chunk decodes the frames finished so far, with ``STREAM_CONTEXT`` frames of context before and
        ``STREAM_LOOKAHEAD`` held back after (EnCodec's output near the end still depends on frames to come),
        and hands out only the settled part. Joined, the chunks equal a one-shot decode of the same codes
        within ``STREAM_TOLERANCE``. Stopping the iteration (or Ctrl-C) leaves the model usable.

        Examples
        --------
        >>> for chunk in model.stream("lofi piano", duration=4, chunk_duration=1.0):   # doctest: +SKIP
        ...     play(chunk)
        """
        check_number("chunk_duration", chunk_duration, "a number of seconds > 0", lambda v: 0 < v < math.inf)
        prompts, s = self._settings(prompt, kwargs)
        chunk = max(1, round(chunk_duration * self.config.frame_rate))
        return self._stream(prompts, s, chunk, hooks, progress)

    def _stream(self, prompts, s, chunk: int, hooks, progress):
        hop = self.config.hop_length
        with self._hooks.scope(hooks):
            frames, emitted = [], 0
            for frame, _ in self._frames(prompts, s, progress):
                frames.append(frame)
                settled = len(frames) - STREAM_LOOKAHEAD
                if settled - emitted >= chunk:
                    start = max(0, emitted - STREAM_CONTEXT)
                    audio = self.codec.decode(np.concatenate(frames[start:], axis=-1))   # [B, C, samples]
                    yield audio[..., (emitted - start) * hop: (settled - start) * hop]
                    emitted = settled
            start = max(0, emitted - STREAM_CONTEXT)
            audio = self.codec.decode(np.concatenate(frames[start:], axis=-1))
            yield audio[..., (emitted - start) * hop:]

    def _settings(self, prompt, kw: dict):
        """Validate everything before any model runs."""
        prompts = check_prompts(prompt)
        names = ["duration", "max_new_tokens", "guidance_scale", "temperature", "top_k", "top_p", "do_sample",
                 "seed", "negative_prompt", "window", "extend_stride", "on_nonfinite"]
        unknown = set(kw) - set(names) - {"self", "prompt", "hooks", "progress"}
        if unknown:
            raise TypeError(f"unknown argument(s) {sorted(unknown)}; allowed: {names}")
        return prompts, resolve(self.config, self.defaults, len(prompts),
                                **{k: kw[k] for k in names if k in kw})

    def _finish(self, prompts, s, frames, tokens) -> Generation:
        c, hook = self.config, self._hooks
        codes = hook("codec.hook_codes", np.concatenate(frames, axis=-1))      # [B, K, frames]
        audio = hook("codec.hook_audio", self.codec.decode(codes))              # [B, C, samples]
        if tokens is None:      # several windows: the delayed matrix of the whole run
            tokens = delay.delay(codes, c.decoder_start_token_id, c.delays)
        return Generation(audio=audio, sample_rate=c.sample_rate, codes=codes, tokens=tokens, prompts=prompts,
                          settings=s.to_dict(), model=self.provenance(), mglab_version=__version__)

    def _frames(self, prompts: list[str], s, progress: bool):
        """Yield each finished frame ``[B, K, 1]`` (with the window's delayed token matrix), window after
        window: audiocraft's long-form scheme."""
        c, hook = self.config, self._hooks
        guided = guidance.is_guided(s.guidance_scale)
        rngs = sampling.make_rngs(s.seed, len(prompts))
        batch, negative = len(prompts), s.negative_prompt or []
        ids, mask = self.text.tokenize(prompts + negative)                      # [B (+B), n]
        encoded = self.text.encode(ids, mask)                                   # [B (+B), n, d]
        hidden = hook("text_encoder.hook_hidden", encoded[:batch])              # [B, n, d]
        cond_mask = hook("text_encoder.hook_mask", mask[:batch])                # [B, n]
        if negative:                                                            # uncond = the negative prompt
            hidden = np.concatenate([hidden, encoded[batch:]])                  # [2B, n, d]
            mask = np.concatenate([cond_mask, mask[batch:]])                    # [2B, n]
        elif guided:
            hidden, mask = guidance.null_condition(hidden, cond_mask)           # [2B, n, d], [2B, n]
        else:
            mask = cond_mask
        plan = _windows(s)                                                      # [(prompt_frames, frames)]
        bar = _progress(sum(n + max(c.delays) for _, n in plan), progress)
        prefix = np.zeros((len(prompts), c.num_codebooks, 0), dtype=np.int64)  # [B, K, P]
        step = 0
        try:
            for w, (_, n) in enumerate(plan):
                hook.window = w
                for t, tokens in self._window(hidden, mask, prefix, n, rngs, s, step):
                    f = t - max(c.delays)                    # the frame that step t finished
                    if f >= prefix.shape[-1]:
                        frame = np.stack([tokens[:, i, f + d + 1] for i, d in enumerate(c.delays)], 1)  # [B, K]
                        yield frame[..., None], tokens
                    bar.update(1)
                step += n + max(c.delays)
                prefix = delay.undelay(tokens, c.delays)[:, :, s.stride_frames:]    # [B, K, window - stride]
        finally:
            hook.window = None
            bar.close()

    def _window(self, hidden, mask, prefix, frames: int, rngs, s, step0: int):
        """Decode one window of ``frames`` frames whose first ``P`` are the prompt codes ``prefix [B, K, P]``.

        Yields ``(t, tokens)`` after each step t; ``tokens [B, K, frames + max_delay + 1]`` is the delayed
        matrix, the start token and the forced pads and prompt codes included.
        """
        c, hook = self.config, self._hooks
        batch, k = prefix.shape[:2]
        length = frames + max(c.delays) + 1
        pattern = delay.build_delay_pattern(k, length, c.decoder_start_token_id, c.delays)   # [K, L]
        known = np.broadcast_to(pattern, (batch, k, length)).copy()            # [B, K, L]: -1 = predict
        for i, d in enumerate(c.delays):
            known[:, i, d + 1: d + 1 + prefix.shape[-1]] = prefix[:, i]         # prompt codes, delayed
        tokens = np.where(known == delay.PREDICT, c.decoder_start_token_id, known)      # [B, K, L]
        halves, attention = hidden.shape[0] // batch, hook.wants_any(is_attention)
        cache = None
        for t in range(length - 1):
            step = step0 + t
            x = hook("decoder.hook_input_ids", tokens[:, :, t], step)           # [B, K]
            x = np.tile(x.reshape(-1, 1), (halves, 1))                          # [H*B*K, 1]
            logits, cache, attn = self.decoder.step(x, hidden, mask, cache, attention, capacity=length - 1)
            logits = _finite(logits, step, s.on_nonfinite, batch, k)            # [H*B*K, V]
            if hook:
                cache = self.decoder.run_hooks(hook, step, cache, attn)
            cond, uncond = guidance.split(logits, batch, k)                     # [B, K, V] each
            scores = hook("guidance.hook_cond_logits", cond, step)              # [B, K, V]
            if halves == 2:
                uncond = hook("guidance.hook_uncond_logits", uncond, step)      # [B, K, V]
                scores = guidance.guide(scores, uncond, s.guidance_scale)       # [B, K, V]
            scores = hook("guidance.hook_logits", scores, step)                 # [B, K, V]
            if s.do_sample:
                scores = sampling.warp(scores, s.temperature, s.top_k, s.top_p)   # [B, K, V]
            scores = hook("sampler.hook_logits", scores, step)                  # [B, K, V]
            _some_token_left(scores, step)
            nxt = sampling.sample(scores, rngs) if s.do_sample else sampling.greedy(scores)   # [B, K]
            nxt = hook("sampler.hook_tokens", nxt, step)                        # [B, K]
            column = np.where(known[:, :, t + 1] == delay.PREDICT, nxt, known[:, :, t + 1])  # [B, K]
            tokens[:, :, t + 1] = hook("delay.hook_tokens", column, step)       # [B, K]
            yield t, tokens

    def provenance(self) -> dict:
        """What a Generation records of the model: source, layout, decoder and each graph's variant and sha256."""
        if self._provenance is None:
            self._provenance = {
                "source": self.source, "layout": self.files.layout, "size": self.files.size,
                "decoder": self.layout,
                "components": {name: {"dtype": self.dtypes[name], "file": path.name, "sha256": files.sha256(path)}
                               for name, path in self.paths.items()}}
        return self._provenance


STREAM_CONTEXT = 50      # frames decoded before a chunk, for EnCodec's convolutions and LSTM to settle
STREAM_LOOKAHEAD = 4     # frames held back after a chunk: their audio still depends on frames to come
STREAM_TOLERANCE = 1e-4  # |joined chunks - one-shot decode| allowed (1.2e-7 seen on the bundled model)
NONFINITE_FILL = 1e9


def _windows(s) -> list[tuple[int, int]]:
    """``[(prompt_frames, frames), ...]`` per window: the first has no prompt; each later one is prompted with
    the last ``window - stride`` frames of the one before and adds up to ``stride`` new frames."""
    plan, done, prompt = [], 0, 0
    while done < s.frames:
        n = min(s.window_frames, prompt + s.frames - done)
        plan.append((prompt, n))
        done += n - prompt
        prompt = n - s.stride_frames
    return plan


def _finite(logits: np.ndarray, step: int, how: str, batch: int, k: int) -> np.ndarray:
    """NaN or inf logits: an error naming the step, prompt and codebook, or (``how='replace'``) finite fills."""
    if np.isfinite(logits).all():
        return logits
    if how == "replace":
        return np.nan_to_num(logits, nan=-NONFINITE_FILL, posinf=NONFINITE_FILL, neginf=-NONFINITE_FILL)
    row = int(np.flatnonzero(~np.isfinite(logits).all(axis=-1))[0])
    half, b, kb = row // (batch * k), (row % (batch * k)) // k, row % k
    bad = logits[row]
    raise FloatingPointError(
        f"non-finite logits at step {step}, prompt {b}, codebook {kb} "
        f"({'conditional' if half == 0 else 'unconditional'} branch): {int(np.isnan(bad).sum())} NaN, "
        f"{int(np.isinf(bad).sum())} inf of {bad.size}; pass on_nonfinite='replace' to carry on")


def _some_token_left(scores: np.ndarray, step: int) -> None:
    left = np.isfinite(scores).any(axis=-1) & ~np.isnan(scores).any(axis=-1)   # [B, K]
    if not left.all():
        b, kb = map(int, np.argwhere(~left)[0])
        raise FloatingPointError(f"no token left to choose at step {step}, prompt {b}, codebook {kb}: every "
                                 "logit is -inf or NaN (a hook or the filters removed them all)")


def _file_bytes(path: Path) -> int:
    """A graph's bytes, external data files included."""
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())


def _selected(step: int, steps) -> bool:
    """Is decoding step ``step`` in ``steps`` (a slice with non-negative bounds, or a list of indices)?"""
    if isinstance(steps, slice):
        start, stride = steps.start or 0, steps.step or 1
        return step >= start and (steps.stop is None or step < steps.stop) and (step - start) % stride == 0
    return step in steps


class _NoBar:
    def update(self, n):
        pass

    def close(self):
        pass


def _progress(total: int, progress: bool):
    if not progress:
        return _NoBar()
    from tqdm.auto import tqdm
    return tqdm(total=total, desc="decoding", unit="step")
